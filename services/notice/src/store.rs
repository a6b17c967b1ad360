//! notice's table.

use dure_chassis::ApiError;
use dure_chassis::db::Db;
use dure_chassis::events::Outbox;
use dure_contracts::events::{NoticeDeleted, NoticePublished};
use serde::Serialize;
use sqlx::AnyPool;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notice {
    pub id: String,
    pub title: String,
    pub body: String,
    pub pinned: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(sqlx::FromRow)]
struct NoticeRow {
    id: String,
    title: String,
    body: String,
    pinned: i64,
    created_at: String,
    updated_at: String,
}

impl From<NoticeRow> for Notice {
    fn from(row: NoticeRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            body: row.body,
            pinned: row.pinned != 0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, title, body, pinned, created_at, updated_at";

#[tracing::instrument(name = "db insert", skip_all, fields(otel.kind = "client", db.collection.name = "notices"))]
pub async fn insert(db: &Db, outbox: &Outbox, notice: &Notice) -> Result<(), ApiError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO notices (id, title, body, pinned, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&notice.id)
    .bind(&notice.title)
    .bind(&notice.body)
    .bind(i64::from(notice.pinned))
    .bind(&notice.created_at)
    .bind(&notice.updated_at)
    .execute(&mut *tx)
    .await?;
    let published = NoticePublished {
        v: 1,
        notice_id: notice.id.clone(),
        title: notice.title.clone(),
    };
    outbox.append(&mut tx, &published).await?;
    outbox.commit(tx).await?;
    Ok(())
}

#[tracing::instrument(name = "db notice", skip_all, fields(otel.kind = "client", db.collection.name = "notices"))]
pub async fn notice(pool: &AnyPool, id: &str) -> Result<Option<Notice>, ApiError> {
    let query = format!("SELECT {COLUMNS} FROM notices WHERE id = $1");
    let row: Option<NoticeRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(Into::into))
}

/// Pinned first, then newest, after the `(pinned, created_at, id)` cursor.
#[tracing::instrument(name = "db notices", skip_all, fields(otel.kind = "client", db.collection.name = "notices"))]
pub async fn notices(
    pool: &AnyPool,
    after: Option<(i64, &str, &str)>,
    limit: i64,
) -> Result<Vec<Notice>, ApiError> {
    let rows: Vec<NoticeRow> = match after {
        Some((pinned, created_at, id)) => {
            let query = format!(
                "SELECT {COLUMNS} FROM notices WHERE (pinned, created_at, id) < ($1, $2, $3) \
                 ORDER BY pinned DESC, created_at DESC, id DESC LIMIT $4"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(query))
                .bind(pinned)
                .bind(created_at)
                .bind(id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => {
            let query = format!(
                "SELECT {COLUMNS} FROM notices ORDER BY pinned DESC, created_at DESC, id DESC LIMIT $1"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(query))
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Changes what is given; `None` if there is no such notice.
#[tracing::instrument(name = "db update", skip_all, fields(otel.kind = "client", db.collection.name = "notices"))]
pub async fn update(
    db: &Db,
    id: &str,
    title: Option<String>,
    body: Option<String>,
    pinned: Option<bool>,
) -> Result<Option<Notice>, ApiError> {
    let mut tx = db.begin().await?;
    let changed = sqlx::query(
        "UPDATE notices SET title = COALESCE($2, title), body = COALESCE($3, body), \
         pinned = COALESCE($4, pinned), updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(body)
    .bind(pinned.map(i64::from))
    .bind(dure_chassis::clock::now())
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    let query = format!("SELECT {COLUMNS} FROM notices WHERE id = $1");
    let row: NoticeRow = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(row.into()))
}

#[tracing::instrument(name = "db delete", skip_all, fields(otel.kind = "client", db.collection.name = "notices"))]
pub async fn delete(db: &Db, outbox: &Outbox, id: &str) -> Result<bool, ApiError> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query("DELETE FROM notices WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Ok(false);
    }
    let event = NoticeDeleted {
        v: 1,
        notice_id: id.to_owned(),
    };
    outbox.append(&mut tx, &event).await?;
    outbox.commit(tx).await?;
    Ok(true)
}
