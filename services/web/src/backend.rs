//! Calls to the other services, and what they answer.
//!
//! One [`Peer`] per service (discovery, breaker, bulkhead, timeout, one
//! retry of a GET on another instance). Every call carries the request's
//! `X-Request-Id`, the client's address as `X-Forwarded-For` (identity
//! throttles failed logins per address) and, when signed in, the user's
//! access token. An answer is either the 2xx body, a [`Failure::Refused`]
//! with the problem's status and message, or a [`Failure::Unavailable`]
//! when the service could not answer (down, breaker open, too slow).

use crate::Settings;
use axum::http::header::ACCEPT;
use axum::http::{HeaderValue, Method, StatusCode};
use dure_chassis::client::StreamingResponse;
use dure_chassis::discovery::Directory;
use dure_chassis::peer::{Call, Peer, PeerError, PeerSettings};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::IpAddr;

/// The services web calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    Identity,
    Posting,
    Notice,
    Notification,
}

impl Svc {
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Posting => "posting",
            Self::Notice => "notice",
            Self::Notification => "notification",
        }
    }

    /// What a page says is missing when the service is.
    pub fn unavailable(self) -> &'static str {
        match self {
            Self::Identity => "Accounts are unavailable right now",
            Self::Posting => "Postings are unavailable right now",
            Self::Notice => "Notices are unavailable right now",
            Self::Notification => "Notifications are unavailable right now",
        }
    }
}

/// Who a call is made for: the request it serves and, signed in, the token.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub request_id: Option<&'a HeaderValue>,
    pub client: Option<IpAddr>,
    pub token: Option<&'a str>,
}

/// Why a call has no usable answer.
#[derive(Debug)]
pub enum Failure {
    /// No answer: the service is down, its breaker open, or too slow.
    Unavailable { service: Svc, cause: String },
    /// An error answer.
    Refused(Problem),
}

/// An error answer of a service: its problem+json, or what there was of it.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    pub retry_after: Option<HeaderValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    /// The sentence a page shows: the detail, else the title, else the status.
    pub fn message(&self) -> String {
        let fields: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field.replace('_', " "), e.message))
            .collect();
        let head = self
            .detail
            .clone()
            .filter(|d| !d.trim().is_empty())
            .or_else(|| Some(self.title.clone()).filter(|t| !t.trim().is_empty()))
            .unwrap_or_else(|| {
                self.status
                    .canonical_reason()
                    .unwrap_or("Something went wrong")
                    .to_owned()
            });
        if fields.is_empty() {
            head
        } else {
            format!("{head} ({})", fields.join("; "))
        }
    }
}

/// One peer per service.
#[derive(Debug)]
pub struct Backend {
    identity: Peer,
    posting: Peer,
    notice: Peer,
    notification: Peer,
}

impl Backend {
    pub fn new(directory: Directory, settings: &Settings) -> Self {
        let quick = PeerSettings {
            timeout: settings.peer_timeout,
            ..PeerSettings::default()
        };
        let identity = PeerSettings {
            timeout: settings.identity_timeout,
            ..PeerSettings::default()
        };
        Self {
            identity: Peer::new(directory.clone(), "identity", identity),
            posting: Peer::new(directory.clone(), "posting", quick),
            notice: Peer::new(directory.clone(), "notice", quick),
            notification: Peer::new(directory, "notification", quick),
        }
    }

    fn peer(&self, service: Svc) -> &Peer {
        match service {
            Svc::Identity => &self.identity,
            Svc::Posting => &self.posting,
            Svc::Notice => &self.notice,
            Svc::Notification => &self.notification,
        }
    }

    /// `call` to `service` for `caller`: the 2xx answer, or why not.
    pub async fn send(
        &self,
        service: Svc,
        call: Call,
        caller: Caller<'_>,
    ) -> Result<dure_chassis::client::Response, Failure> {
        let call = with_caller(call, caller);
        match self.peer(service).call(call).await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(Failure::Refused(problem_of(&response))),
            Err(err) => Err(unavailable(service, &err)),
        }
    }

    /// `call` to `service`, its 2xx JSON answer decoded as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        service: Svc,
        call: Call,
        caller: Caller<'_>,
    ) -> Result<T, Failure> {
        let response = self.send(service, call, caller).await?;
        response.json().map_err(|err| Failure::Unavailable {
            service,
            cause: format!("unexpected answer: {err}"),
        })
    }

    /// `GET path` of `service` as JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Svc,
        path: impl Into<String>,
        caller: Caller<'_>,
    ) -> Result<T, Failure> {
        self.json(service, Call::new(Method::GET, path), caller)
            .await
    }

    /// notification's live stream for `caller`; its body goes on until
    /// either side closes it.
    pub async fn notification_stream(
        &self,
        caller: Caller<'_>,
    ) -> Result<StreamingResponse, Failure> {
        let service = Svc::Notification;
        let call = with_caller(
            Call::new(Method::GET, "/api/notifications/stream")
                .header(ACCEPT, HeaderValue::from_static("text/event-stream")),
            caller,
        );
        match self.peer(service).stream(call).await {
            Ok(response) if response.status.is_success() => Ok(response),
            Ok(response) => Err(Failure::Refused(Problem {
                status: response.status,
                title: String::new(),
                detail: None,
                errors: Vec::new(),
                retry_after: None,
            })),
            Err(err) => Err(unavailable(service, &err)),
        }
    }
}

fn with_caller(mut call: Call, caller: Caller<'_>) -> Call {
    if let Some(id) = caller.request_id {
        call.headers.insert("x-request-id", id.clone());
    }
    if let Some(ip) = caller.client
        && let Ok(value) = HeaderValue::from_str(&ip.to_string())
    {
        call.headers.insert("x-forwarded-for", value);
    }
    if let Some(token) = caller.token {
        call = call.bearer(token);
    }
    call
}

fn unavailable(service: Svc, err: &PeerError) -> Failure {
    tracing::warn!(service = service.name(), error = %err, "a part of the page is unavailable");
    Failure::Unavailable {
        service,
        cause: err.to_string(),
    }
}

fn problem_of(response: &dure_chassis::client::Response) -> Problem {
    let mut problem: Problem = serde_json::from_slice(response.body()).unwrap_or(Problem {
        status: response.status(),
        title: String::new(),
        detail: None,
        errors: Vec::new(),
        retry_after: None,
    });
    problem.status = response.status();
    problem.retry_after = response.headers().get("retry-after").cloned();
    problem
}

/// Percent-encodes `text` for a query string value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

// The answers web reads; more fields may come and are ignored.

#[derive(Debug, Clone, Deserialize)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Author {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Posting {
    pub id: String,
    pub title: String,
    pub body: String,
    pub author: Author,
    pub created_at: String,
    pub updated_at: String,
    pub comment_count: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: String,
    pub body: String,
    pub author: Author,
    pub created_at: String,
    /// Whether the viewer may delete it (set by the page, not by posting).
    #[serde(skip)]
    pub may_delete: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notice {
    pub id: String,
    pub title: String,
    pub body: String,
    pub pinned: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub link: String,
    pub created_at: String,
    pub read: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub next_cursor: Option<String>,
    pub unread_count: i64,
}

/// The signed-in user's own account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub email: String,
    pub display_name: String,
}

/// Anyone's public profile.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

/// identity's answer to a login or a refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

impl Posting {
    pub fn when(&self) -> String {
        crate::page::when(&self.created_at)
    }
}

impl Comment {
    pub fn when(&self) -> String {
        crate::page::when(&self.created_at)
    }
}

impl Notice {
    pub fn when(&self) -> String {
        crate::page::when(&self.created_at)
    }
}

impl Notification {
    pub fn when(&self) -> String {
        crate::page::when(&self.created_at)
    }

    /// The page this notification is about.
    pub fn page(&self) -> String {
        crate::page::page_of(&self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("/postings/1?a=b&c"), "%2Fpostings%2F1%3Fa%3Db%26c");
        assert_eq!(encode("abc-_.~"), "abc-_.~");
        assert_eq!(encode("한"), "%ED%95%9C");
    }

    #[test]
    fn a_problem_says_its_detail_and_fields() {
        let problem = Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Unprocessable Entity".into(),
            detail: Some("some fields are invalid".into()),
            errors: vec![FieldError {
                field: "display_name".into(),
                message: "must not be blank".into(),
            }],
            retry_after: None,
        };
        assert_eq!(
            problem.message(),
            "some fields are invalid (display name: must not be blank)"
        );
        let bare = Problem {
            status: StatusCode::BAD_GATEWAY,
            title: String::new(),
            detail: None,
            errors: Vec::new(),
            retry_after: None,
        };
        assert_eq!(bare.message(), "Bad Gateway");
    }
}
