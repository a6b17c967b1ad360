//! `GET /api/home`: the front page in one call, composed from three
//! services at once. Each part has its own deadline and goes through that
//! service's breaker and bulkhead; a part that fails is empty (or null) and
//! named in `degraded`, and the answer is still 200 and fast.

use crate::Gateway;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

/// How long one part may take before the page goes without it.
const PART_DEADLINE: Duration = Duration::from_millis(800);

pub async fn home(
    State(gateway): State<Gateway>,
    dure_chassis::http::ClientAddr(client): dure_chassis::http::ClientAddr,
    headers: HeaderMap,
) -> impl IntoResponse {
    let authorization = headers.get(header::AUTHORIZATION).cloned();
    let notices = part(&gateway, client, "/api/notice?limit=3", None);
    let postings = part(&gateway, client, "/api/postings?limit=10", None);
    let unread = async {
        match &authorization {
            Some(token) => Some(
                part(
                    &gateway,
                    client,
                    "/api/notifications?limit=1",
                    Some(token.clone()),
                )
                .await,
            ),
            None => None,
        }
    };
    let (notices, postings, unread) = tokio::join!(notices, postings, unread);

    let mut degraded = Vec::new();
    let mut items = |part: Option<Value>, service: &str| match part {
        Some(body) => body["items"].clone(),
        None => {
            degraded.push(service.to_owned());
            json!([])
        }
    };
    let notices = items(notices, "notice");
    let postings = items(postings, "posting");
    let unread_notifications = match unread {
        None => Value::Null,
        Some(Some(body)) => body["unread_count"].clone(),
        Some(None) => {
            degraded.push("notification".to_owned());
            Value::Null
        }
    };
    axum::Json(json!({
        "notices": notices,
        "postings": postings,
        "unread_notifications": unread_notifications,
        "degraded": degraded,
    }))
}

/// One part: a GET through the gateway's own routing, breaker and bulkhead,
/// within the deadline; `None` if anything went wrong.
async fn part(
    gateway: &Gateway,
    client: Option<IpAddr>,
    path: &str,
    authorization: Option<axum::http::HeaderValue>,
) -> Option<Value> {
    let mut request = Request::builder().uri(path).body(Body::empty()).ok()?;
    if let Some(token) = authorization {
        request.headers_mut().insert(header::AUTHORIZATION, token);
    }
    // The deadline is the upstream timeout of this call, so that a hanging
    // service counts against its breaker, which then answers at once.
    let response = crate::handle_within(
        gateway,
        gateway.upstreams(),
        client,
        None,
        request,
        Some(PART_DEADLINE),
    )
    .await
    .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = tokio::time::timeout(
        PART_DEADLINE,
        axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&body).ok()
}
