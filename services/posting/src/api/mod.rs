//! posting's public HTTP API (docs/api.md, "posting").
//!
//! - [`postings`]: the board: list, read, write, edit, delete.
//! - [`comments`]: comments under a posting.

pub mod comments;
pub mod postings;

use crate::Board;
use dure_chassis::ApiError;
use dure_chassis::auth::{Claims, Role};
use dure_contracts::Problem;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "dure posting", description = "Postings and comments."),
    components(schemas(Problem)),
    tags((name = "posting", description = "Postings and comments"))
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<Board> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(postings::list, postings::create))
        .routes(routes!(postings::read, postings::update, postings::delete))
        .routes(routes!(comments::list, comments::create))
        .routes(routes!(comments::delete))
}

/// 403 unless the caller wrote it or is an admin.
fn author_or_admin(claims: &Claims, author_id: &str) -> Result<(), ApiError> {
    if claims.sub == author_id || claims.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only its author or an admin may do this".into(),
        ))
    }
}

/// Ids are UUIDs; anything else cannot name a posting or comment.
fn not_found_unless_uuid(id: &str, what: &str) -> Result<(), ApiError> {
    if dure_chassis::openapi::is_uuid(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no such {what}")))
    }
}
