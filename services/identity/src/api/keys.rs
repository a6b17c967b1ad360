//! `/api/admin/signing-keys`: the keys access tokens are signed with, and
//! their rotation (admins).

use crate::Identity;
use crate::keys::KeyInfo;
use axum::extract::State;
use axum::http::StatusCode;
use dure_chassis::ApiError;
use dure_chassis::auth::{Claims, Role};
use dure_contracts::Problem;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeys {
    /// Newest first; `signing` marks the one that signs now.
    keys: Vec<KeyInfo>,
}

/// The published signing keys (admins).
#[utoipa::path(get, path = "/api/admin/signing-keys", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 200, body = SigningKeys),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(identity): State<Identity>,
    claims: Claims,
) -> Result<axum::Json<SigningKeys>, ApiError> {
    claims.require(Role::Admin)?;
    Ok(axum::Json(SigningKeys {
        keys: identity.keys.list().await?,
    }))
}

/// Rotates the signing key (admins): a new key is in the JWKS at once and
/// signs from `signs_from` (seconds later, once every verifier can know it);
/// the previous ones stay published, and their tokens valid, until those
/// tokens have expired.
#[utoipa::path(post, path = "/api/admin/signing-keys", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 201, body = KeyInfo),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "another rotation at the same moment", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate(
    State(identity): State<Identity>,
    claims: Claims,
) -> Result<(StatusCode, axum::Json<KeyInfo>), ApiError> {
    claims.require(Role::Admin)?;
    // Tokens live `access_token_ttl`; a minute more covers clock skew.
    let keep_old_for = identity.access_token_ttl + Duration::from_secs(60);
    let key = identity.keys.rotate(keep_old_for).await?;
    tracing::info!(kid = %key.kid, admin = %claims.sub, "signing key rotated");
    Ok((StatusCode::CREATED, axum::Json(key)))
}
