//! The read model's queries: the live generation, and the three reports
//! over it. An answer's queries run in one [`snapshot`], so its counts and
//! its `as_of` agree and never mix two generations.

use dure_chassis::ApiError;
use dure_chassis::db::{Backend, Db, Tx};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

const LIVE: &str = "(SELECT gen FROM generations WHERE state = 'live')";

/// The live generation, inside a consumer's transaction. On Postgres the row
/// is share-locked until commit, so a rebuild cannot switch generations
/// between this read and the writes that follow it (on SQLite the
/// transaction holds the write lock from its start).
pub async fn live_generation(tx: &mut Tx, backend: Backend) -> anyhow::Result<i64> {
    let sql = match backend {
        Backend::Sqlite => "SELECT gen FROM generations WHERE state = 'live'",
        Backend::Postgres => "SELECT gen FROM generations WHERE state = 'live' FOR SHARE",
    };
    let row: Option<(i64,)> = sqlx::query_as(sql).fetch_optional(&mut **tx).await?;
    // None only for the moment a switch commits; the consumer tries again.
    row.map(|(g,)| g)
        .ok_or_else(|| anyhow::anyhow!("no live generation at this instant"))
}

/// A read-only transaction with one snapshot for all its statements, so that
/// an answer and its `as_of` describe the same state (SQLite's read
/// transaction in WAL mode; Postgres' repeatable read).
pub async fn snapshot(db: &Db) -> Result<Tx, ApiError> {
    Ok(match db.backend() {
        Backend::Sqlite => db.pool().begin_with("BEGIN DEFERRED").await?,
        Backend::Postgres => {
            db.pool()
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?
        }
    })
}

/// The last position applied per producer, in the live generation.
pub async fn as_of(tx: &mut Tx) -> Result<BTreeMap<String, i64>, ApiError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT producer, position FROM positions WHERE gen = {LIVE} ORDER BY producer"
    )))
    .fetch_all(&mut **tx)
    .await?;
    let mut positions: BTreeMap<String, i64> = crate::PRODUCERS
        .iter()
        .map(|p| ((*p).to_owned(), 0))
        .collect();
    positions.extend(rows);
    Ok(positions)
}

/// Totals of what exists now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    pub users: i64,
    pub postings: i64,
    pub comments: i64,
    pub notices: i64,
    /// The generation that answered.
    pub generation: i64,
}

pub async fn totals(tx: &mut Tx) -> Result<Totals, ApiError> {
    let (generation, users, postings, comments, notices): (i64, i64, i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT g.gen, \
               (SELECT COUNT(*) FROM users WHERE gen = g.gen AND deleted = 0), \
               (SELECT COUNT(*) FROM postings WHERE gen = g.gen), \
               (SELECT COUNT(*) FROM comments WHERE gen = g.gen), \
               (SELECT COUNT(*) FROM notices WHERE gen = g.gen) \
             FROM generations g WHERE g.gen = {LIVE}"
        )))
        .fetch_one(&mut **tx)
        .await?;
    Ok(Totals {
        users,
        postings,
        comments,
        notices,
        generation,
    })
}

/// Counts per bucket start (`2026-12-03T00` for a day of width 10 or an hour
/// of width 13), for rows created in `[from, to)`.
pub async fn counts_by_bucket(
    tx: &mut Tx,
    table: Table,
    width: usize,
    from: &str,
    to: &str,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let (name, column, filter) = table.parts();
    let sql = format!(
        "SELECT substr({column}, 1, {width}) AS bucket, COUNT(*) FROM {name} \
         WHERE gen = {LIVE} AND {column} >= $1 AND {column} < $2{filter} GROUP BY bucket"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().collect())
}

/// What the activity report counts.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Signups,
    Postings,
    Comments,
}

impl Table {
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Signups => ("users", "registered_at", " AND deleted = 0"),
            Self::Postings => ("postings", "created_at", ""),
            Self::Comments => ("comments", "created_at", ""),
        }
    }
}

/// One author's contribution in a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = AuthorActivity)]
pub struct Author {
    pub user_id: String,
    pub display_name: String,
    pub postings: i64,
    pub comments: i64,
}

/// Authors by postings plus comments in `[from, to)`, most first.
pub async fn top_authors(
    tx: &mut Tx,
    from: &str,
    to: &str,
    limit: i64,
) -> Result<Vec<Author>, ApiError> {
    let sql = format!(
        "WITH live AS {LIVE_CTE}, \
         contributions AS ( \
             SELECT author_id, 1 AS posting, 0 AS comment FROM postings \
               WHERE gen = (SELECT gen FROM live) AND created_at >= $1 AND created_at < $2 \
             UNION ALL \
             SELECT author_id, 0, 1 FROM comments \
               WHERE gen = (SELECT gen FROM live) AND created_at >= $1 AND created_at < $2) \
         SELECT c.author_id, COALESCE(u.display_name, $3), SUM(c.posting), SUM(c.comment) \
         FROM contributions c \
         LEFT JOIN users u ON u.gen = (SELECT gen FROM live) AND u.user_id = c.author_id \
         GROUP BY c.author_id, u.display_name \
         ORDER BY SUM(c.posting) + SUM(c.comment) DESC, c.author_id LIMIT $4"
    );
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(crate::projection::ERASED_USER)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, display_name, postings, comments)| Author {
            user_id,
            display_name,
            postings,
            comments,
        })
        .collect())
}

const LIVE_CTE: &str = "(SELECT gen FROM generations WHERE state = 'live')";
