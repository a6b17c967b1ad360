//! notice's public HTTP API (docs/api.md, "notice"): read for all, write
//! for admins.

use crate::Notices;
use crate::store::{self, Notice};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dure_chassis::auth::{Claims, Role};
use dure_chassis::error::FieldErrors;
use dure_chassis::http::{Json, Query};
use dure_chassis::openapi::{self, text_field};
use dure_chassis::pagination::{self, Cursor, Key, PageQuery};
use dure_chassis::{ApiError, clock};
use dure_contracts::Problem;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 20_000;

#[derive(OpenApi)]
#[openapi(
    info(title = "dure notice", description = "Notices from the admins."),
    components(schemas(Problem)),
    tags((name = "notice", description = "Notices"))
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<Notices> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list, create))
        .routes(routes!(read, update, delete))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticePage {
    items: Vec<Notice>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNotice {
    #[schema(schema_with = title_schema)]
    title: String,
    #[schema(schema_with = body_schema)]
    body: String,
    /// Shown above the others; default false.
    pinned: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeChanges {
    #[schema(schema_with = new_title_schema)]
    title: Option<String>,
    #[schema(schema_with = new_body_schema)]
    body: Option<String>,
    pinned: Option<bool>,
}

fn title_schema() -> Object {
    openapi::text(TITLE_MAX, "Maintenance on Sunday")
}

fn body_schema() -> Object {
    openapi::text(BODY_MAX, "The board is read-only from 02:00 to 03:00 UTC.")
}

fn new_title_schema() -> Object {
    openapi::or_null(title_schema())
}

fn new_body_schema() -> Object {
    openapi::or_null(body_schema())
}

/// Notices are ordered pinned first, then newest.
const PINNED_THEN_NEWEST: Cursor = Cursor(&[Key::Flag, Key::Time, Key::Id]);

/// `?limit=&cursor=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(schema_with = pagination::limit_schema)]
    limit: Option<String>,
    #[param(schema_with = cursor_schema)]
    cursor: Option<String>,
}

fn cursor_schema() -> Object {
    PINNED_THEN_NEWEST.schema()
}

fn no_notice() -> ApiError {
    ApiError::NotFound("no such notice".into())
}

fn uuid_or_not_found(id: &str) -> Result<(), ApiError> {
    if openapi::is_uuid(id) {
        Ok(())
    } else {
        Err(no_notice())
    }
}

/// Notices, pinned first, then newest.
#[utoipa::path(get, path = "/api/notice", tag = "notice",
    params(ListQuery),
    responses((status = 200, body = NoticePage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`limit` below 1", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(notices): State<Notices>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<NoticePage>, ApiError> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let cursor = page.cursor(PINNED_THEN_NEWEST)?;
    let after = cursor.as_ref().map(|parts| {
        (
            i64::from(parts[0] == "1"),
            parts[1].as_str(),
            parts[2].as_str(),
        )
    });
    let rows = store::notices(notices.db.pool(), after, limit + 1).await?;
    let (items, next_cursor) = pagination::page(rows, limit, |n| {
        PINNED_THEN_NEWEST.encode(&[if n.pinned { "1" } else { "0" }, &n.created_at, &n.id])
    });
    Ok(axum::Json(NoticePage { items, next_cursor }))
}

/// One notice.
#[utoipa::path(get, path = "/api/notice/{id}", tag = "notice", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Notice),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read(
    State(notices): State<Notices>,
    Path(id): Path<String>,
) -> Result<axum::Json<Notice>, ApiError> {
    uuid_or_not_found(&id)?;
    store::notice(notices.db.pool(), &id)
        .await?
        .map(axum::Json)
        .ok_or_else(no_notice)
}

/// Publishes a notice (admins).
#[utoipa::path(post, path = "/api/notice", tag = "notice", security(("bearer" = [])), request_body = NewNotice,
    responses((status = 201, body = Notice),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(notices): State<Notices>,
    claims: Claims,
    Json(new): Json<NewNotice>,
) -> Result<(StatusCode, axum::Json<Notice>), ApiError> {
    claims.require(Role::Admin)?;
    let mut errors = FieldErrors::default();
    let title = errors.check(text_field("title", &new.title, TITLE_MAX));
    let body = errors.check(text_field("body", &new.body, BODY_MAX));
    errors.into_result()?;
    let now = clock::now();
    let notice = Notice {
        id: uuid::Uuid::now_v7().to_string(),
        title: title.unwrap_or_default(),
        body: body.unwrap_or_default(),
        pinned: new.pinned.unwrap_or(false),
        created_at: now.clone(),
        updated_at: now,
    };
    store::insert(&notices.db, &notices.outbox, &notice).await?;
    tracing::info!(notice_id = %notice.id, admin = %claims.sub, "notice published");
    Ok((StatusCode::CREATED, axum::Json(notice)))
}

/// Edits a notice (admins).
#[utoipa::path(patch, path = "/api/notice/{id}", tag = "notice", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = NoticeChanges,
    responses((status = 200, body = Notice),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(notices): State<Notices>,
    claims: Claims,
    Path(id): Path<String>,
    Json(changes): Json<NoticeChanges>,
) -> Result<axum::Json<Notice>, ApiError> {
    claims.require(Role::Admin)?;
    uuid_or_not_found(&id)?;
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
    store::update(&notices.db, &id, title, body, changes.pinned)
        .await?
        .map(axum::Json)
        .ok_or_else(no_notice)
}

/// Deletes a notice (admins).
#[utoipa::path(delete, path = "/api/notice/{id}", tag = "notice", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(notices): State<Notices>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    claims.require(Role::Admin)?;
    uuid_or_not_found(&id)?;
    if store::delete(&notices.db, &notices.outbox, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_notice())
    }
}
