//! Admins' view of account deletions: each erasure saga's state, and a
//! retry for a failed one.

use crate::Identity;
use crate::erasure::{self, Deletion};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dure_chassis::ApiError;
use dure_chassis::auth::{Claims, Role};
use dure_contracts::Problem;

fn no_deletion() -> ApiError {
    ApiError::NotFound("this user has no account deletion".into())
}

/// The erasure saga of a deleted account (admins).
#[utoipa::path(get, path = "/api/admin/users/{id}/deletion", tag = "identity", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = Deletion),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deletion(
    State(identity): State<Identity>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<axum::Json<Deletion>, ApiError> {
    claims.require(Role::Admin)?;
    if !dure_chassis::openapi::is_uuid(&id) {
        return Err(no_deletion());
    }
    erasure::deletion(&identity.db, &id)
        .await?
        .map(axum::Json)
        .ok_or_else(no_deletion)
}

/// Retries a failed erasure saga (admins).
#[utoipa::path(post, path = "/api/admin/users/{id}/deletion/retry", tag = "identity", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "user id")),
    responses(
        (status = 202, description = "the saga is in progress again"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry(
    State(identity): State<Identity>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    claims.require(Role::Admin)?;
    if !dure_chassis::openapi::is_uuid(&id) {
        return Err(no_deletion());
    }
    erasure::retry_failed(&identity.db, &identity.outbox, &identity.erasure, &id).await?;
    tracing::info!(user_id = %id, admin = %claims.sub, "erasure saga retried");
    Ok(StatusCode::ACCEPTED)
}
