//! `/notifications`: the signed-in user's notifications, marking them read,
//! and `/notifications/live`, the stream behind the header's badge.

use super::{Cursor, after, older};
use crate::Web;
use crate::backend::{NotificationPage, Svc};
use crate::page::{self, Chrome, PageError, render, see_other};
use crate::session::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use dure_chassis::peer::Call;

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    chrome: Chrome,
    /// `None` when notification did not answer.
    page: Option<NotificationPage>,
    older: Option<String>,
}

pub async fn list(
    State(web): State<Web>,
    viewer: Viewer,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let (mut chrome, list) = tokio::join!(
        Chrome::of(&web, &viewer),
        web.backend().get::<NotificationPage>(
            Svc::Notification,
            after("/api/notifications?limit=20", page.cursor.as_deref()),
            viewer.caller(),
        )
    );
    let list = chrome.part(list)?;
    if let Some(list) = &list {
        chrome.unread = Some(list.unread_count);
    }
    render(&NotificationsPage {
        chrome,
        older: list.as_ref().and_then(|l| older(l.next_cursor.as_deref())),
        page: list,
    })
}

pub async fn read_all(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require()?;
    let call = Call::new(Method::POST, "/api/notifications/read-all");
    web.backend()
        .send(Svc::Notification, call, viewer.caller())
        .await?;
    Ok(see_other("/notifications"))
}

pub async fn read_one(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let call = Call::new(Method::POST, format!("/api/notifications/{id}/read"));
    web.backend()
        .send(Svc::Notification, call, viewer.caller())
        .await?;
    Ok(see_other("/notifications"))
}

/// The signed-in user's new notifications as Server-Sent Events, passed on
/// from notification as they come (the badge's script counts them).
pub async fn live(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require()?;
    let stream = web.backend().notification_stream(viewer.caller()).await?;
    let mut response = Response::new(stream.body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
