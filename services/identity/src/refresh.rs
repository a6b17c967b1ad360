//! Refresh tokens: opaque, single use, stored only as a hash.
//!
//! A login starts a family. Refreshing uses up the presented token and adds
//! its successor to the family. Presenting a token that was already used means
//! it was copied: the whole family is revoked, so neither the thief nor the
//! victim can go on with it (the victim logs in again).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::ApiError;
use dure_chassis::clock;
use dure_chassis::db::Tx;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A refresh token as handed to the client, once.
pub struct IssuedRefreshToken(pub String);

fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn expiry(ttl: Duration) -> String {
    clock::format(time::OffsetDateTime::now_utc() + ttl)
}

/// Adds a new token to `family_id` (a new family on login).
#[tracing::instrument(name = "db issue", skip_all, fields(otel.kind = "client", db.collection.name = "refresh_tokens"))]
pub async fn issue(
    tx: &mut Tx,
    user_id: &str,
    family_id: &str,
    ttl: Duration,
) -> Result<IssuedRefreshToken, ApiError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&token))
    .bind(family_id)
    .bind(user_id)
    .bind(clock::now())
    .bind(expiry(ttl))
    .execute(&mut **tx)
    .await?;
    Ok(IssuedRefreshToken(token))
}

/// What using up a presented token found.
pub enum Redemption {
    /// The token was good: it is now used, and belongs to this user and family.
    Valid { user_id: String, family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already used once: the family has just been revoked.
    Reused,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    family_id: String,
    user_id: String,
    expires_at: String,
    used_at: Option<String>,
    revoked_at: Option<String>,
}

/// Uses up `token`. Run inside a write transaction; commit it whatever the
/// outcome, since a detected reuse revokes the family.
#[tracing::instrument(name = "db redeem", skip_all, fields(otel.kind = "client", db.collection.name = "refresh_tokens"))]
pub async fn redeem(tx: &mut Tx, token: &str) -> Result<Redemption, ApiError> {
    let token_hash = hash(token);
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(&token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Redemption::Invalid);
    };
    if row.revoked_at.is_some() {
        return Ok(Redemption::Invalid);
    }
    if row.used_at.is_some() {
        revoke_family(tx, &row.family_id).await?;
        return Ok(Redemption::Reused);
    }
    if row.expires_at <= clock::now() {
        return Ok(Redemption::Invalid);
    }
    // The `used_at IS NULL` guard settles a race between two refreshes with
    // the same token: only one can use it; the other is a reuse.
    let used = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(&token_hash)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    if used.rows_affected() == 0 {
        revoke_family(tx, &row.family_id).await?;
        return Ok(Redemption::Reused);
    }
    Ok(Redemption::Valid {
        user_id: row.user_id,
        family_id: row.family_id,
    })
}

#[tracing::instrument(name = "db revoke_family", skip_all, fields(otel.kind = "client", db.collection.name = "refresh_tokens"))]
pub async fn revoke_family(tx: &mut Tx, family_id: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Revokes the family `token` belongs to, if it is a known token (logout).
#[tracing::instrument(name = "db revoke_family_of", skip_all, fields(otel.kind = "client", db.collection.name = "refresh_tokens"))]
pub async fn revoke_family_of(tx: &mut Tx, token: &str) -> Result<(), ApiError> {
    let family: Option<(String,)> =
        sqlx::query_as("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash(token))
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((family_id,)) = family {
        revoke_family(tx, &family_id).await?;
    }
    Ok(())
}

/// Revokes every token of a user (after a password change).
#[tracing::instrument(name = "db revoke_all_of_user", skip_all, fields(otel.kind = "client", db.collection.name = "refresh_tokens"))]
pub async fn revoke_all_of_user(tx: &mut Tx, user_id: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
