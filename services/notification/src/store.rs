//! notification's tables: per-user notifications, notices for everyone,
//! notice read marks, and a replica of users.

use dure_chassis::ApiError;
use dure_chassis::db::Tx;
use serde::Serialize;
use sqlx::AnyPool;
use utoipa::ToSchema;

/// One entry of a user's notification list.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Notification {
    pub id: String,
    /// `comment` or `notice`.
    pub kind: String,
    pub title: String,
    /// Where in the API the thing it is about lives.
    pub link: String,
    pub created_at: String,
    #[serde(serialize_with = "as_bool")]
    #[schema(value_type = bool)]
    pub read: i64,
}

fn as_bool<S: serde::Serializer>(read: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(*read != 0)
}

/// A user's personal notifications and every notice, as one list.
const FEED: &str = "SELECT id, kind, title, link, created_at, read FROM ( \
       SELECT id, kind, title, link, created_at, CASE WHEN read_at IS NULL THEN 0 ELSE 1 END AS read \
       FROM notifications WHERE user_id = $1 \
     UNION ALL \
       SELECT n.id, 'notice' AS kind, n.title, n.link, n.created_at, \
              CASE WHEN r.notice_id IS NULL THEN 0 ELSE 1 END AS read \
       FROM notices n LEFT JOIN notice_reads r ON r.notice_id = n.id AND r.user_id = $1 \
     ) AS feed";

/// Newest first, after the `(created_at, id)` cursor, optionally unread only.
#[tracing::instrument(name = "db list", skip_all, fields(otel.kind = "client", db.collection.name = "notifications"))]
pub async fn list(
    pool: &AnyPool,
    user_id: &str,
    unread_only: bool,
    before: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<Notification>, ApiError> {
    let mut conditions = Vec::new();
    if before.is_some() {
        conditions.push("(created_at, id) < ($2, $3)");
    }
    if unread_only {
        conditions.push("read = 0");
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let limit_param = if before.is_some() { "$4" } else { "$2" };
    let sql = format!("{FEED}{filter} ORDER BY created_at DESC, id DESC LIMIT {limit_param}");
    let mut query =
        sqlx::query_as::<_, Notification>(sqlx::AssertSqlSafe(sql)).bind(user_id.to_owned());
    if let Some((created_at, id)) = before {
        query = query.bind(created_at.to_owned()).bind(id.to_owned());
    }
    Ok(query.bind(limit).fetch_all(pool).await?)
}

/// Everything created after `(created_at, id)`, oldest first (the stream).
#[tracing::instrument(name = "db newer", skip_all, fields(otel.kind = "client", db.collection.name = "notifications"))]
pub async fn newer(
    pool: &AnyPool,
    user_id: &str,
    after: (&str, &str),
) -> Result<Vec<Notification>, ApiError> {
    let sql = format!("{FEED} WHERE (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT 100");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(after.0)
        .bind(after.1)
        .fetch_all(pool)
        .await?)
}

#[tracing::instrument(name = "db unread_count", skip_all, fields(otel.kind = "client", db.collection.name = "notifications"))]
pub async fn unread_count(pool: &AnyPool, user_id: &str) -> Result<i64, ApiError> {
    let sql = format!("SELECT COUNT(*) FROM ({FEED}) AS all_items WHERE read = 0");
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// Marks one entry read; false if the user has no such entry.
#[tracing::instrument(name = "db mark_read", skip_all, fields(otel.kind = "client", db.collection.name = "notifications"))]
pub async fn mark_read(tx: &mut Tx, user_id: &str, id: &str, now: &str) -> Result<bool, ApiError> {
    let own = sqlx::query(
        "UPDATE notifications SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if own.rows_affected() > 0 {
        return Ok(true);
    }
    let notice: Option<(String,)> = sqlx::query_as("SELECT id FROM notices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    if notice.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO notice_reads (user_id, notice_id, read_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, notice_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

#[tracing::instrument(name = "db mark_all_read", skip_all, fields(otel.kind = "client", db.collection.name = "notifications"))]
pub async fn mark_all_read(tx: &mut Tx, user_id: &str, now: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO notice_reads (user_id, notice_id, read_at) \
         SELECT $1, n.id, $2 FROM notices n \
         WHERE NOT EXISTS (SELECT 1 FROM notice_reads r WHERE r.user_id = $1 AND r.notice_id = n.id)",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
