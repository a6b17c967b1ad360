//! posting's tables: postings and comments.

use dure_chassis::ApiError;
use dure_chassis::db::{Db, Tx};
use dure_chassis::events::Outbox;
use dure_contracts::events::{
    CommentAdded, CommentDeleted, PostingDeleted, PostingPublished, PostingUpdated,
};
use serde::Serialize;
use sqlx::AnyPool;
use utoipa::ToSchema;

/// Who wrote something, as posting knows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Author {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Posting {
    pub id: String,
    pub title: String,
    pub body: String,
    pub author: Author,
    pub created_at: String,
    pub updated_at: String,
    pub comment_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Comment {
    pub id: String,
    pub posting_id: String,
    pub body: String,
    pub author: Author,
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct PostingRow {
    id: String,
    title: String,
    body: String,
    author_id: String,
    author_name: String,
    created_at: String,
    updated_at: String,
    comment_count: i64,
}

impl From<PostingRow> for Posting {
    fn from(row: PostingRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            body: row.body,
            author: Author {
                id: row.author_id,
                display_name: row.author_name,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            comment_count: row.comment_count,
        }
    }
}

#[derive(sqlx::FromRow)]
struct CommentRow {
    id: String,
    posting_id: String,
    body: String,
    author_id: String,
    author_name: String,
    created_at: String,
}

impl From<CommentRow> for Comment {
    fn from(row: CommentRow) -> Self {
        Self {
            id: row.id,
            posting_id: row.posting_id,
            body: row.body,
            author: Author {
                id: row.author_id,
                display_name: row.author_name,
            },
            created_at: row.created_at,
        }
    }
}

const POSTING_COLUMNS: &str =
    "id, title, body, author_id, author_name, created_at, updated_at, comment_count";
const COMMENT_COLUMNS: &str = "id, posting_id, body, author_id, author_name, created_at";

#[tracing::instrument(name = "db insert_posting", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn insert_posting(db: &Db, outbox: &Outbox, posting: &Posting) -> Result<(), ApiError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO postings (id, title, body, author_id, author_name, created_at, updated_at, comment_count) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
    )
    .bind(&posting.id)
    .bind(&posting.title)
    .bind(&posting.body)
    .bind(&posting.author.id)
    .bind(&posting.author.display_name)
    .bind(&posting.created_at)
    .bind(&posting.updated_at)
    .execute(&mut *tx)
    .await?;
    let published = PostingPublished {
        v: 1,
        posting_id: posting.id.clone(),
        author_id: posting.author.id.clone(),
        title: posting.title.clone(),
    };
    outbox.append(&mut tx, &published).await?;
    outbox.commit(tx).await?;
    Ok(())
}

#[tracing::instrument(name = "db posting", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn posting(pool: &AnyPool, id: &str) -> Result<Option<Posting>, ApiError> {
    let query = format!("SELECT {POSTING_COLUMNS} FROM postings WHERE id = $1");
    let row: Option<PostingRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(Into::into))
}

async fn posting_in(tx: &mut Tx, id: &str) -> Result<Option<Posting>, ApiError> {
    let query = format!("SELECT {POSTING_COLUMNS} FROM postings WHERE id = $1");
    let row: Option<PostingRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(Into::into))
}

/// Newest first, `limit` rows after the `(created_at, id)` cursor, optionally
/// of one author. Both filters use an index; no OFFSET anywhere.
#[tracing::instrument(name = "db postings", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn postings(
    pool: &AnyPool,
    author: Option<&str>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<Posting>, ApiError> {
    let mut conditions = Vec::new();
    let mut next = 1;
    if author.is_some() {
        conditions.push(format!("author_id = ${next}"));
        next += 1;
    }
    if after.is_some() {
        conditions.push(format!("(created_at, id) < (${}, ${})", next, next + 1));
        next += 2;
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let query = format!(
        "SELECT {POSTING_COLUMNS} FROM postings {filter} ORDER BY created_at DESC, id DESC LIMIT ${next}"
    );
    let mut query = sqlx::query_as::<_, PostingRow>(sqlx::AssertSqlSafe(query));
    if let Some(author) = author {
        query = query.bind(author.to_owned());
    }
    if let Some((created_at, id)) = after {
        query = query.bind(created_at.to_owned()).bind(id.to_owned());
    }
    let rows = query.bind(limit).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Applies an edit if the posting exists; returns it as stored afterwards.
#[tracing::instrument(name = "db update_posting", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn update_posting(
    db: &Db,
    outbox: &Outbox,
    id: &str,
    edit: impl FnOnce(&Posting) -> Result<(Option<String>, Option<String>), ApiError>,
) -> Result<Option<Posting>, ApiError> {
    let mut tx = db.begin().await?;
    let Some(current) = posting_in(&mut tx, id).await? else {
        return Ok(None);
    };
    let (title, body) = edit(&current)?;
    sqlx::query(
        "UPDATE postings SET title = COALESCE($2, title), body = COALESCE($3, body), updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(body)
    .bind(dure_chassis::clock::now())
    .execute(&mut *tx)
    .await?;
    let updated = posting_in(&mut tx, id).await?;
    if let Some(posting) = &updated {
        let event = PostingUpdated {
            v: 1,
            posting_id: posting.id.clone(),
            title: posting.title.clone(),
        };
        outbox.append(&mut tx, &event).await?;
    }
    outbox.commit(tx).await?;
    Ok(updated)
}

/// Deletes a posting (and its comments) if `allowed` agrees.
#[tracing::instrument(name = "db delete_posting", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn delete_posting(
    db: &Db,
    outbox: &Outbox,
    id: &str,
    allowed: impl FnOnce(&Posting) -> Result<(), ApiError>,
) -> Result<bool, ApiError> {
    let mut tx = db.begin().await?;
    let Some(current) = posting_in(&mut tx, id).await? else {
        return Ok(false);
    };
    allowed(&current)?;
    sqlx::query("DELETE FROM postings WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let event = PostingDeleted {
        v: 1,
        posting_id: id.to_owned(),
    };
    outbox.append(&mut tx, &event).await?;
    outbox.commit(tx).await?;
    Ok(true)
}

/// Adds a comment and counts it in the same transaction; false if the
/// posting does not exist.
#[tracing::instrument(name = "db insert_comment", skip_all, fields(otel.kind = "client", db.collection.name = "comments"))]
pub async fn insert_comment(db: &Db, outbox: &Outbox, comment: &Comment) -> Result<bool, ApiError> {
    let mut tx = db.begin().await?;
    let Some(posting) = posting_in(&mut tx, &comment.posting_id).await? else {
        return Ok(false);
    };
    let counted =
        sqlx::query("UPDATE postings SET comment_count = comment_count + 1 WHERE id = $1")
            .bind(&comment.posting_id)
            .execute(&mut *tx)
            .await?;
    if counted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO comments (id, posting_id, body, author_id, author_name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&comment.id)
    .bind(&comment.posting_id)
    .bind(&comment.body)
    .bind(&comment.author.id)
    .bind(&comment.author.display_name)
    .bind(&comment.created_at)
    .execute(&mut *tx)
    .await?;
    let added = CommentAdded {
        v: 1,
        comment_id: comment.id.clone(),
        posting_id: posting.id.clone(),
        posting_title: posting.title.clone(),
        posting_author_id: posting.author.id.clone(),
        author_id: comment.author.id.clone(),
        author_name: comment.author.display_name.clone(),
    };
    outbox.append(&mut tx, &added).await?;
    outbox.commit(tx).await?;
    Ok(true)
}

/// Oldest first, after the `(created_at, id)` cursor.
#[tracing::instrument(name = "db comments", skip_all, fields(otel.kind = "client", db.collection.name = "comments"))]
pub async fn comments(
    pool: &AnyPool,
    posting_id: &str,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<Comment>, ApiError> {
    let rows: Vec<CommentRow> = match after {
        Some((created_at, id)) => {
            let query = format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE posting_id = $1 AND (created_at, id) > ($2, $3) \
                 ORDER BY created_at, id LIMIT $4"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(query))
                .bind(posting_id)
                .bind(created_at)
                .bind(id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => {
            let query = format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE posting_id = $1 ORDER BY created_at, id LIMIT $2"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(query))
                .bind(posting_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Deletes a comment of a posting if `allowed` agrees, uncounting it.
#[tracing::instrument(name = "db delete_comment", skip_all, fields(otel.kind = "client", db.collection.name = "comments"))]
pub async fn delete_comment(
    db: &Db,
    outbox: &Outbox,
    posting_id: &str,
    comment_id: &str,
    allowed: impl FnOnce(&Comment) -> Result<(), ApiError>,
) -> Result<bool, ApiError> {
    let mut tx = db.begin().await?;
    let query = format!("SELECT {COMMENT_COLUMNS} FROM comments WHERE id = $1 AND posting_id = $2");
    let row: Option<CommentRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(comment_id)
        .bind(posting_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(comment) = row.map(Comment::from) else {
        return Ok(false);
    };
    allowed(&comment)?;
    sqlx::query("DELETE FROM comments WHERE id = $1")
        .bind(comment_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE postings SET comment_count = comment_count - 1 WHERE id = $1")
        .bind(posting_id)
        .execute(&mut *tx)
        .await?;
    let event = CommentDeleted {
        v: 1,
        comment_id: comment_id.to_owned(),
        posting_id: posting_id.to_owned(),
    };
    outbox.append(&mut tx, &event).await?;
    outbox.commit(tx).await?;
    Ok(true)
}

/// The name shown for the author of content whose account was deleted.
pub const DELETED_USER: &str = "(deleted user)";

/// posting's copy of an author's name, kept current from `user.*` events.
#[tracing::instrument(name = "db rename_author", skip_all, fields(otel.kind = "client", db.collection.name = "postings"))]
pub async fn rename_author(tx: &mut Tx, author_id: &str, display_name: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE postings SET author_name = $2 WHERE author_id = $1")
        .bind(author_id)
        .bind(display_name)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE comments SET author_name = $2 WHERE author_id = $1")
        .bind(author_id)
        .bind(display_name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
