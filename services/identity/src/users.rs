//! The `users` table.

use dure_chassis::ApiError;
use dure_chassis::auth::Role;
use dure_chassis::db::Tx;
use dure_chassis::error::conflict_or_internal;
use serde::Serialize;
use sqlx::AnyPool;
use utoipa::ToSchema;

/// Unique rules of `users`: (field, Postgres constraint, SQLite column).
const UNIQUES: &[(&str, &str, &str)] = &[
    ("username", "users_username_key", "users.username"),
    ("email", "users_email_key", "users.email"),
];

/// An account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: String,
}

impl UserRecord {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }
}

/// An account as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: String,
}

impl From<UserRecord> for User {
    fn from(record: UserRecord) -> Self {
        Self {
            role: record.role(),
            id: record.id,
            username: record.username,
            email: record.email,
            display_name: record.display_name,
            created_at: record.created_at,
        }
    }
}

/// An account as anyone sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicProfile {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

const COLUMNS: &str = "id, username, email, display_name, password_hash, role, created_at";

#[tracing::instrument(name = "db insert", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn insert(tx: &mut Tx, user: &UserRecord) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO users (id, username, email, display_name, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&user.id)
    .bind(&user.username)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(&user.role)
    .bind(&user.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or_internal(e, UNIQUES))?;
    Ok(())
}

#[tracing::instrument(name = "db by_id", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn by_id(pool: &AnyPool, id: &str) -> Result<Option<UserRecord>, ApiError> {
    let query = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Like [`by_id`], inside a transaction.
#[tracing::instrument(name = "db by_id_in", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn by_id_in(tx: &mut Tx, id: &str) -> Result<Option<UserRecord>, ApiError> {
    let query = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// By username, or by email when the login name contains `@`.
#[tracing::instrument(name = "db by_login_name", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn by_login_name(pool: &AnyPool, name: &str) -> Result<Option<UserRecord>, ApiError> {
    let column = if name.contains('@') {
        "email"
    } else {
        "username"
    };
    let query = format!("SELECT {COLUMNS} FROM users WHERE {column} = $1 AND deleted_at IS NULL");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(name = "db any_admin", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn any_admin(pool: &AnyPool) -> Result<bool, ApiError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM users WHERE role = 'admin' AND deleted_at IS NULL LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.is_some())
}

/// Writes the changeable fields of `user` back.
#[tracing::instrument(name = "db update", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn update(tx: &mut Tx, user: &UserRecord) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE users SET email = $2, display_name = $3, password_hash = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(dure_chassis::clock::now())
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or_internal(e, UNIQUES))?;
    Ok(())
}

/// Disables the account at once: it can no longer log in, its refresh
/// tokens go, and every lookup above stops finding it. Its email and
/// credentials are erased when the erasure saga completes (`erasure`).
#[tracing::instrument(name = "db disable", skip_all, fields(otel.kind = "client", db.collection.name = "users"))]
pub async fn disable(tx: &mut Tx, id: &str) -> Result<bool, ApiError> {
    let result =
        sqlx::query("UPDATE users SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .bind(dure_chassis::clock::now())
            .execute(&mut **tx)
            .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() > 0)
}
