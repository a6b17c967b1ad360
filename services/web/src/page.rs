//! Rendering: the chrome every page shares, error pages, and the headers of
//! every answer.
//!
//! Handlers answer `Result<Response, PageError>`. A [`PageError`] (and any
//! other 4xx or 5xx, such as a malformed form or query that axum refuses) is
//! turned into an HTML page with the site's header by
//! [`crate::session::layer`], which knows the viewer; a browser never sees
//! JSON or plain text from this service.

use crate::Web;
use crate::backend::{Failure, Svc};
use crate::session::Viewer;
use askama::Template;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The largest form accepted: a posting's 20,000 characters, each up to
/// 12 bytes once percent-encoded, and the other fields.
pub const FORM_LIMIT: usize = 256 * 1024;

/// Scripts and styles only from this site, no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// What every page shows around its content: who is signed in, the
/// notifications badge, the assets, and the parts that are missing.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: Option<ChromeUser>,
    /// `None` when notification could not say (no badge then).
    pub unread: Option<i64>,
    pub csrf: String,
    /// This page, percent-encoded: where "Sign in" comes back to.
    pub here: String,
    pub css: String,
    pub js: String,
    /// "Postings are unavailable right now", one per missing part.
    pub unavailable: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ChromeUser {
    pub id: String,
    pub display_name: String,
    pub admin: bool,
}

impl Chrome {
    /// The chrome without the badge (error pages, and when signed out).
    pub fn plain(web: &Web, viewer: &Viewer) -> Self {
        Self {
            user: viewer.user.as_ref().map(|u| ChromeUser {
                id: u.user_id.clone(),
                display_name: u.display_name.clone(),
                admin: u.admin,
            }),
            unread: None,
            csrf: viewer.csrf.clone(),
            here: crate::backend::encode(&safe_next(Some(&viewer.here))),
            css: web.assets().css_path(),
            js: web.assets().js_path(),
            unavailable: Vec::new(),
        }
    }

    /// The chrome with the signed-in user's unread count, asked of
    /// notification; without it when notification does not answer in time.
    pub async fn of(web: &Web, viewer: &Viewer) -> Self {
        let mut chrome = Self::plain(web, viewer);
        if viewer.user.is_some() {
            #[derive(serde::Deserialize)]
            struct Unread {
                unread_count: i64,
            }
            chrome.unread = web
                .backend()
                .get::<Unread>(
                    Svc::Notification,
                    "/api/notifications?limit=1",
                    viewer.caller(),
                )
                .await
                .ok()
                .map(|u| u.unread_count);
        }
        chrome
    }

    /// Notes that `service`'s part of the page is missing.
    pub fn missing(&mut self, service: Svc) {
        let note = service.unavailable();
        if !self.unavailable.contains(&note) {
            self.unavailable.push(note);
        }
    }

    /// `part`, or `None` noted as missing when its service did not answer.
    /// Refusals are errors of the page and are passed on.
    pub fn part<T>(&mut self, part: Result<T, Failure>) -> Result<Option<T>, PageError> {
        match part {
            Ok(value) => Ok(Some(value)),
            Err(Failure::Unavailable { service, .. }) => {
                self.missing(service);
                Ok(None)
            }
            Err(refused) => Err(refused.into()),
        }
    }
}

/// A page's answer when it cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// An error page: the status and the sentence it shows.
    Page { status: StatusCode, message: String },
    /// The page needs a signed-in user: to the sign-in page, then back.
    SignIn { next: String },
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Page {
            status,
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "There is no such page.")
    }
}

impl From<Failure> for PageError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable { service, .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}.", service.unavailable()),
            ),
            Failure::Refused(problem) if problem.status == StatusCode::UNAUTHORIZED => Self::new(
                StatusCode::UNAUTHORIZED,
                "Your session has ended. Sign in again.",
            ),
            Failure::Refused(problem) if problem.status == StatusCode::NOT_FOUND => {
                Self::not_found()
            }
            Failure::Refused(problem) => Self::new(problem.status, problem.message()),
        }
    }
}

/// The message an error answer carries to the layer that renders it.
#[derive(Debug, Clone)]
struct ErrorMessage(String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Page { status, message } => {
                let mut response = status.into_response();
                response.extensions_mut().insert(ErrorMessage(message));
                response
            }
            Self::SignIn { next } => {
                see_other(&format!("/signin?next={}", crate::backend::encode(&next)))
            }
        }
    }
}

/// A 303 to `location` (after a form, the browser GETs the next page).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Where to go after signing in: a path of this site, never elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control())
                && !path.starts_with("/signin")
                && !path.starts_with("/signup")
                && !path.starts_with("/signout") =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `template` as an HTML page with `status`.
pub fn render_status<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>This page cannot be shown.</p>"),
            )
                .into_response()
        }
    }
}

/// `template` as a 200 HTML page.
pub fn render<T: Template>(template: &T) -> Result<Response, PageError> {
    Ok(render_status(StatusCode::OK, template))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// `error` as the page the browser gets.
pub fn error_page(web: &Web, viewer: &Viewer, error: PageError) -> Response {
    match error {
        PageError::Page { status, message } => page_for(web, viewer, status, &message),
        sign_in @ PageError::SignIn { .. } => sign_in.into_response(),
    }
}

fn page_for(web: &Web, viewer: &Viewer, status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        chrome: Chrome::plain(web, viewer),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    render_status(status, &page)
}

/// An error answer as an HTML page, unless it is one already. Its message
/// is the [`PageError`]'s, or the plain text axum answered with (a form or
/// query it could not read), or the status's reason.
pub async fn as_error_page(web: &Web, viewer: &Viewer, response: Response) -> Response {
    let is_html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        return response;
    }
    let status = response.status();
    let kept: Vec<(HeaderName, HeaderValue)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            [axum::http::header::RETRY_AFTER, axum::http::header::ALLOW].contains(name)
                || name.as_str() == "set-cookie"
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let message = match response.extensions().get::<ErrorMessage>() {
        Some(ErrorMessage(message)) => message.clone(),
        None => {
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("Error").to_owned()
            } else {
                text
            }
        }
    };
    let mut page = page_for(web, viewer, status, &message);
    for (name, value) in kept {
        page.headers_mut().append(name, value);
    }
    page
}

/// Headers on every answer: what may run, what may frame it, what leaks
/// in the referrer. Pages (made for one viewer, with their CSRF token) are
/// never stored by caches; assets set their own long cache lifetime.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Any path this site has no page for.
pub async fn not_found() -> PageError {
    PageError::not_found()
}

/// A page asked for with a method it does not take.
pub async fn not_allowed() -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page cannot be used that way.",
    )
}

/// `2026-12-03T13:50:12.345Z` as `2026-12-03 13:50 UTC`.
pub fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// A notification's link (an API path) as the page that shows the thing.
pub fn page_of(link: &str) -> String {
    if let Some(id) = link.strip_prefix("/api/postings/") {
        format!("/postings/{}", crate::backend::encode(id))
    } else if let Some(id) = link.strip_prefix("/api/notice/") {
        format!("/notices/{}", crate::backend::encode(id))
    } else {
        "/notifications".to_owned()
    }
}

/// An id from a path, if it is one: ids are UUIDs, anything else has no page.
pub fn id(raw: &str) -> Result<String, PageError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| PageError::not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_this_site() {
        assert_eq!(safe_next(Some("/postings/1?x=2")), "/postings/1?x=2");
        for outside in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/signout",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn notification_links_become_pages() {
        assert_eq!(page_of("/api/postings/abc"), "/postings/abc");
        assert_eq!(page_of("/api/notice/n1"), "/notices/n1");
        assert_eq!(page_of("javascript:alert(1)"), "/notifications");
    }

    #[test]
    fn times_read_as_minutes() {
        assert_eq!(when("2026-12-03T13:50:12.345Z"), "2026-12-03 13:50 UTC");
        assert_eq!(when("odd"), "odd");
    }

    #[test]
    fn ids_are_uuids() {
        assert!(id("0193a5b4-7c2e-7d7a-9c1e-2b8f1d0e3a41").is_ok());
        assert!(id("../../api/user").is_err());
    }
}
