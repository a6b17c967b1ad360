//! `/api/postings` and `/api/postings/{id}`.

use super::{author_or_admin, not_found_unless_uuid};
use crate::Board;
use crate::store::{self, Author, Posting as PostingBody};
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
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 20_000;

/// `?limit=&cursor=&author=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(schema_with = pagination::limit_schema)]
    limit: Option<String>,
    #[param(schema_with = cursor_schema)]
    cursor: Option<String>,
    /// Only this user's postings.
    #[param(schema_with = author_schema)]
    author: Option<String>,
}

fn cursor_schema() -> Object {
    pagination::BY_CREATION.schema()
}

fn author_schema() -> Object {
    openapi::uuid("01a2b3c4-0000-7000-8000-000000000000")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostingPage {
    items: Vec<PostingBody>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPosting {
    #[schema(schema_with = title_schema)]
    title: String,
    #[schema(schema_with = body_schema)]
    body: String,
}

/// Only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingChanges {
    #[schema(schema_with = new_title_schema)]
    title: Option<String>,
    #[schema(schema_with = new_body_schema)]
    body: Option<String>,
}

fn title_schema() -> Object {
    openapi::text(TITLE_MAX, "Moving day")
}

fn body_schema() -> Object {
    openapi::text(BODY_MAX, "Who can lend a hand on Saturday?")
}

fn new_title_schema() -> Object {
    openapi::or_null(title_schema())
}

fn new_body_schema() -> Object {
    openapi::or_null(body_schema())
}

/// Postings, newest first.
#[utoipa::path(get, path = "/api/postings", tag = "posting", params(ListQuery),
    responses((status = 200, body = PostingPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`limit` below 1", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(service): State<Board>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<PostingPage>, ApiError> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let cursor = page.cursor(pagination::BY_CREATION)?;
    if let Some(author) = &query.author
        && !openapi::is_uuid(author)
    {
        return Err(ApiError::BadRequest("`author` must be a user id".into()));
    }
    let after = cursor.as_ref().map(|c| (c[0].as_str(), c[1].as_str()));
    let rows =
        store::postings(service.db.pool(), query.author.as_deref(), after, limit + 1).await?;
    let (items, next_cursor) = pagination::page(rows, limit, |p| {
        pagination::BY_CREATION.encode(&[&p.created_at, &p.id])
    });
    Ok(axum::Json(PostingPage { items, next_cursor }))
}

/// Publishes a posting as the caller.
#[utoipa::path(post, path = "/api/postings", tag = "posting", security(("bearer" = [])), request_body = NewPosting,
    responses((status = 201, body = PostingBody),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(service): State<Board>,
    claims: Claims,
    Json(new): Json<NewPosting>,
) -> Result<(StatusCode, axum::Json<PostingBody>), ApiError> {
    let mut errors = FieldErrors::default();
    let title = errors.check(text_field("title", &new.title, TITLE_MAX));
    let body = errors.check(text_field("body", &new.body, BODY_MAX));
    errors.into_result()?;
    let (Some(title), Some(body)) = (title, body) else {
        unreachable!("both fields are valid when there is no error")
    };
    let now = clock::now();
    let posting = PostingBody {
        id: uuid::Uuid::now_v7().to_string(),
        title,
        body,
        author: Author {
            id: claims.sub.clone(),
            display_name: claims.name.clone(),
        },
        created_at: now.clone(),
        updated_at: now,
        comment_count: 0,
    };
    store::insert_posting(&service.db, &service.outbox, &posting).await?;
    Ok((StatusCode::CREATED, axum::Json(posting)))
}

/// One posting.
#[utoipa::path(get, path = "/api/postings/{id}", tag = "posting", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PostingBody),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(service): State<Board>,
    Path(id): Path<String>,
) -> Result<axum::Json<PostingBody>, ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    store::posting(service.db.pool(), &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound("no such posting".into()))
}

/// Edits a posting: its author or an admin.
#[utoipa::path(patch, path = "/api/postings/{id}", tag = "posting", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = PostingChanges,
    responses((status = 200, body = PostingBody),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(service): State<Board>,
    claims: Claims,
    Path(id): Path<String>,
    Json(changes): Json<PostingChanges>,
) -> Result<axum::Json<PostingBody>, ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    let mut errors = FieldErrors::default();
    let title = changes
        .title
        .as_deref()
        .and_then(|t| errors.check(text_field("title", t, TITLE_MAX)));
    let body = changes
        .body
        .as_deref()
        .and_then(|b| errors.check(text_field("body", b, BODY_MAX)));
    errors.into_result()?;
    let updated = store::update_posting(&service.db, &service.outbox, &id, |current| {
        author_or_admin(&claims, &current.author.id)?;
        Ok((title, body))
    })
    .await?;
    updated
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound("no such posting".into()))
}

/// Deletes a posting and its comments: its author or an admin.
#[utoipa::path(delete, path = "/api/postings/{id}", tag = "posting", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(service): State<Board>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    not_found_unless_uuid(&id, "posting")?;
    let deleted = store::delete_posting(&service.db, &service.outbox, &id, |current| {
        author_or_admin(&claims, &current.author.id)
    })
    .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such posting".into()))
    }
}
