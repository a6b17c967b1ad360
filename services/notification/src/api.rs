//! notification's public HTTP API (docs/api.md, "notification"): a user's
//! own notifications only, and their live stream.

use crate::Notifications;
use crate::store::{self, Notification};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use dure_chassis::auth::Claims;
use dure_chassis::http::Query;
use dure_chassis::pagination::{self, PageQuery};
use dure_chassis::{ApiError, clock};
use dure_contracts::Problem;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "dure notification", description = "Your notifications, and their live stream."),
    components(schemas(Problem)),
    tags((name = "notification", description = "Notifications"))
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<Notifications> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list))
        .routes(routes!(read_one))
        .routes(routes!(read_all))
        .routes(routes!(stream))
}

/// `?unread=&limit=&cursor=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only unread ones.
    #[param(value_type = Option<bool>)]
    unread: Option<String>,
    #[param(schema_with = pagination::limit_schema)]
    limit: Option<String>,
    #[param(schema_with = cursor_schema)]
    cursor: Option<String>,
}

fn cursor_schema() -> Object {
    pagination::BY_CREATION.schema()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    items: Vec<Notification>,
    next_cursor: Option<String>,
    unread_count: i64,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "notification", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = NotificationPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`limit` below 1", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(service): State<Notifications>,
    claims: Claims,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<NotificationPage>, ApiError> {
    let unread_only = match query.unread.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`unread` must be true or false".into(),
            ));
        }
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let cursor = page.cursor(pagination::BY_CREATION)?;
    let before = cursor.as_ref().map(|c| (c[0].as_str(), c[1].as_str()));
    let pool = service.db.pool();
    let rows = store::list(pool, &claims.sub, unread_only, before, limit + 1).await?;
    let (items, next_cursor) = pagination::page(rows, limit, |n| {
        pagination::BY_CREATION.encode(&[&n.created_at, &n.id])
    });
    let unread_count = store::unread_count(pool, &claims.sub).await?;
    Ok(axum::Json(NotificationPage {
        items,
        next_cursor,
        unread_count,
    }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notification", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "marked read"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn read_one(
    State(service): State<Notifications>,
    claims: Claims,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound("no such notification".into());
    if !dure_chassis::openapi::is_uuid(&id) {
        return Err(not_found());
    }
    let mut tx = service.db.begin().await?;
    let marked = store::mark_read(&mut tx, &claims.sub, &id, &clock::now()).await?;
    tx.commit().await?;
    if marked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// Marks all of the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notification", security(("bearer" = [])),
    responses((status = 204, description = "all marked read")))]
pub async fn read_all(
    State(service): State<Notifications>,
    claims: Claims,
) -> Result<StatusCode, ApiError> {
    let mut tx = service.db.begin().await?;
    store::mark_all_read(&mut tx, &claims.sub, &clock::now()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New notifications as they arrive: one Server-Sent Event `notification`
/// each, its data the notification as JSON.
#[utoipa::path(get, path = "/api/notifications/stream", tag = "notification", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of `notification` events"),
              (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn stream(
    State(service): State<Notifications>,
    claims: Claims,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = Live {
        service,
        user_id: claims.sub,
        seen: (clock::now(), String::new()),
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(state, |mut live| async move {
        loop {
            if let Some(next) = live.pending.pop_front() {
                let event = Event::default()
                    .event("notification")
                    .id(next.id.clone())
                    .json_data(&next)
                    .unwrap_or_else(|_| Event::default().comment("unencodable notification"));
                return Some((Ok(event), live));
            }
            live.wait_for_news().await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// One open stream: what it has sent up to, what it is about to send.
struct Live {
    service: Notifications,
    user_id: String,
    seen: (String, String),
    pending: VecDeque<Notification>,
}

impl Live {
    /// Waits for a handled event (this replica's consumer) or a second (another
    /// replica's), then reads what is new.
    async fn wait_for_news(&mut self) {
        let news = self.service.news.clone();
        let woken = news.notified();
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let after = (self.seen.0.as_str(), self.seen.1.as_str());
        match store::newer(self.service.db.pool(), &self.user_id, after).await {
            Ok(items) => {
                if let Some(last) = items.last() {
                    self.seen = (last.created_at.clone(), last.id.clone());
                }
                self.pending.extend(items);
            }
            Err(err) => tracing::warn!(error = %err, "cannot read new notifications for a stream"),
        }
    }
}
