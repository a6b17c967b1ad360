//! `/api/postings/{id}/comments`.

use super::{author_or_admin, not_found_unless_uuid};
use crate::Board;
use crate::store::{self, Author, Comment};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dure_chassis::auth::Claims;
use dure_chassis::error::FieldErrors;
use dure_chassis::http::{Json, Query};
use dure_chassis::openapi::{self, text_field};
use dure_chassis::pagination::{self, PageQuery};
use dure_chassis::{ApiError, clock};
use dure_contracts::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::Object;

pub const BODY_MAX: usize = 5_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentPage {
    items: Vec<Comment>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    #[schema(schema_with = body_schema)]
    body: String,
}

fn body_schema() -> Object {
    openapi::text(BODY_MAX, "Count me in.")
}

fn no_posting() -> ApiError {
    ApiError::NotFound("no such posting".into())
}

/// A posting's comments, oldest first.
#[utoipa::path(get, path = "/api/postings/{id}/comments", tag = "posting",
    params(("id" = uuid::Uuid, Path), PageQuery),
    responses((status = 200, body = CommentPage),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`limit` below 1", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(service): State<Board>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<axum::Json<CommentPage>, ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    let limit = page.limit()?;
    let cursor = page.cursor(pagination::BY_CREATION)?;
    if store::posting(service.db.pool(), &id).await?.is_none() {
        return Err(no_posting());
    }
    let after = cursor.as_ref().map(|c| (c[0].as_str(), c[1].as_str()));
    let rows = store::comments(service.db.pool(), &id, after, limit + 1).await?;
    let (items, next_cursor) = pagination::page(rows, limit, |c| {
        pagination::BY_CREATION.encode(&[&c.created_at, &c.id])
    });
    Ok(axum::Json(CommentPage { items, next_cursor }))
}

/// Comments on a posting as the caller.
#[utoipa::path(post, path = "/api/postings/{id}/comments", tag = "posting", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = NewComment,
    responses((status = 201, body = Comment),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(service): State<Board>,
    claims: Claims,
    Path(id): Path<String>,
    Json(new): Json<NewComment>,
) -> Result<(StatusCode, axum::Json<Comment>), ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    let mut errors = FieldErrors::default();
    let body = errors.check(text_field("body", &new.body, BODY_MAX));
    errors.into_result()?;
    let comment = Comment {
        id: uuid::Uuid::now_v7().to_string(),
        posting_id: id,
        body: body.unwrap_or_default(),
        author: Author {
            id: claims.sub.clone(),
            display_name: claims.name.clone(),
        },
        created_at: clock::now(),
    };
    if !store::insert_comment(&service.db, &service.outbox, &comment).await? {
        return Err(no_posting());
    }
    Ok((StatusCode::CREATED, axum::Json(comment)))
}

/// Deletes a comment: its author or an admin.
#[utoipa::path(delete, path = "/api/postings/{id}/comments/{comment_id}", tag = "posting", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("comment_id" = uuid::Uuid, Path)),
    responses((status = 204, description = "deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(service): State<Board>,
    claims: Claims,
    Path((id, comment_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    not_found_unless_uuid(&comment_id, "comment")?;
    let deleted =
        store::delete_comment(&service.db, &service.outbox, &id, &comment_id, |comment| {
            author_or_admin(&claims, &comment.author.id)
        })
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such comment on this posting".into()))
    }
}
