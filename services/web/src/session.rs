//! Who is asking: the session cookie, its row, token refresh and CSRF.
//!
//! A browser that signs in gets `dure_session`, a random token; the table
//! keeps only its SHA-256, with the user's tokens from identity and the
//! session's CSRF token. The access token lives minutes, the session weeks:
//! shortly before the access token expires, the next request refreshes it,
//! and a claim in the row (`refreshing_since`) makes sure two requests never
//! spend the single-use refresh token twice.
//!
//! Every state-changing request must carry the CSRF token as the form field
//! `csrf`: the session's when signed in, else the `dure_csrf` cookie's
//! (double submit, for the sign-in and sign-up forms). [`layer`] checks it
//! before any handler runs, so a request without it changes nothing.

use crate::Web;
use crate::backend::{Caller, Failure, Svc, Tokens};
use crate::page::{self, PageError};
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::peer::Call;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dure_session";
/// The signed-out CSRF cookie's name.
pub const CSRF_COOKIE: &str = "dure_csrf";
/// How long a session lasts without a visit (identity's refresh tokens last
/// as long by default).
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Refresh this long before the access token expires (at most a quarter
/// of its lifetime).
const REFRESH_MARGIN: i64 = 60;
/// A refresh claimed longer ago than this was abandoned (its process died).
const REFRESH_STALE: i64 = 15;

/// The request's asker, as every handler sees it.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: Option<SignedIn>,
    /// The token this viewer's forms carry.
    pub csrf: String,
    /// The request came over HTTPS (cookies get `Secure`).
    pub secure: bool,
    pub request_id: Option<HeaderValue>,
    pub client: Option<IpAddr>,
    /// Path and query of the request, where sign-in returns to.
    pub here: String,
}

/// A signed-in user, from their access token's claims.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub display_name: String,
    pub admin: bool,
    pub access_token: String,
}

impl Viewer {
    /// Who calls the other services for this request.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            request_id: self.request_id.as_ref(),
            client: self.client,
            token: self.user.as_ref().map(|u| u.access_token.as_str()),
        }
    }

    /// The signed-in user, or a redirect to the sign-in page and back here.
    pub fn require(&self) -> Result<&SignedIn, PageError> {
        self.user.as_ref().ok_or_else(|| PageError::SignIn {
            next: self.here.clone(),
        })
    }

    /// The signed-in admin; anyone else is refused.
    pub fn require_admin(&self) -> Result<&SignedIn, PageError> {
        let user = self.require()?;
        if user.admin {
            Ok(user)
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Only an admin can do that.",
            ))
        }
    }

    /// Whether the viewer may change what `author_id` wrote.
    pub fn may_edit(&self, author_id: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.admin || u.user_id == author_id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self {
                user: None,
                csrf: String::new(),
                secure: false,
                request_id: None,
                client: None,
                here: "/".into(),
            }))
    }
}

/// Finds the request's viewer (refreshing its token when due), refuses a
/// state-changing request without the viewer's CSRF token, and turns error
/// answers into pages.
pub async fn layer(State(web): State<Web>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let dure_chassis::http::ClientAddr(client) =
        match dure_chassis::http::ClientAddr::from_request_parts(&mut parts, &()).await {
            Ok(addr) => addr,
            Err(never) => match never {},
        };
    let cookies = Cookies::of(&parts.headers);
    let user = match cookies.get(SESSION_COOKIE) {
        Some(token) => current(&web, token, &parts, client).await,
        None => None,
    };
    let mut new_csrf_cookie = None;
    let csrf = match &user {
        Some((_, csrf)) => csrf.clone(),
        None => match cookies.get(CSRF_COOKIE).filter(|c| well_formed(c)) {
            Some(token) => token.to_owned(),
            None => {
                let token = random_token();
                new_csrf_cookie = Some(token.clone());
                token
            }
        },
    };
    let viewer = Viewer {
        user: user.map(|(user, _)| user),
        csrf,
        secure: is_https(&parts.headers),
        request_id: parts.headers.get("x-request-id").cloned(),
        client,
        here: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    parts.extensions.insert(viewer.clone());

    let request = if matches!(parts.method, Method::GET | Method::HEAD) {
        Request::from_parts(parts, body)
    } else {
        match checked_form(parts, body, &viewer.csrf).await {
            Ok(request) => request,
            Err(refused) => return page::error_page(&web, &viewer, refused),
        }
    };
    let mut response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        response = page::as_error_page(&web, &viewer, response).await;
    }
    if let Some(token) = new_csrf_cookie
        && let Ok(value) = HeaderValue::from_str(&cookie(CSRF_COOKIE, &token, viewer.secure, None))
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// The request again, its body read, if its form carries `expected` as `csrf`.
async fn checked_form(parts: Parts, body: Body, expected: &str) -> Result<Request, PageError> {
    let bytes = axum::body::to_bytes(body, page::FORM_LIMIT)
        .await
        .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "That form is too large."))?;
    #[derive(Deserialize)]
    struct Csrf {
        csrf: Option<String>,
    }
    let copy = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let sent = axum::extract::Form::<Csrf>::from_request(copy, &())
        .await
        .ok()
        .and_then(|form| form.0.csrf);
    let valid = sent.is_some_and(|sent| {
        !expected.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
    });
    if valid {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session's user and CSRF token, its access token refreshed when due;
/// `None` when there is no such session or it has ended.
async fn current(
    web: &Web,
    token: &str,
    parts: &Parts,
    client: Option<IpAddr>,
) -> Option<(SignedIn, String)> {
    let hash = hash(token);
    let now = unix_now();
    let row = match load(web, &hash, now).await {
        Ok(Some(row)) => row,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read a session");
            return None;
        }
    };
    if now < row.refresh_at {
        return row.signed_in();
    }
    let caller = Caller {
        request_id: parts.headers.get("x-request-id"),
        client,
        token: None,
    };
    refresh(web, &hash, row, caller).await
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    access_token: String,
    refresh_token: String,
    access_expires_at: i64,
    refresh_at: i64,
    csrf: String,
}

impl Row {
    fn signed_in(self) -> Option<(SignedIn, String)> {
        let user = claims(&self.access_token)?;
        Some((user, self.csrf))
    }
}

async fn load(web: &Web, hash: &str, now: i64) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT access_token, refresh_token, access_expires_at, refresh_at, csrf FROM sessions WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(web.db().pool())
    .await
}

/// Refreshes the session's tokens, or waits for the request that does.
async fn refresh(
    web: &Web,
    hash: &str,
    row: Row,
    caller: Caller<'_>,
) -> Option<(SignedIn, String)> {
    let now = unix_now();
    // Only while the row still holds the refresh token read above: one that
    // another request has spent already would revoke the whole family.
    let claimed = sqlx::query(
        "UPDATE sessions SET refreshing_since = $1 WHERE token_hash = $2 AND refresh_token = $3 AND (refreshing_since IS NULL OR refreshing_since < $4)",
    )
    .bind(now)
    .bind(hash)
    .bind(&row.refresh_token)
    .bind(now - REFRESH_STALE)
    .execute(web.db().writer())
    .await
    .map(|done| done.rows_affected() == 1)
    .unwrap_or(false);
    if !claimed {
        return wait_for_refresh(web, hash).await;
    }
    let call = Call::new(Method::POST, "/api/token/refresh").json(&serde_json::json!({
        "refresh_token": row.refresh_token,
    }));
    match web
        .backend()
        .json::<Tokens>(Svc::Identity, call, caller)
        .await
    {
        Ok(tokens) => {
            let now = unix_now();
            let stored = sqlx::query(
                "UPDATE sessions SET access_token = $1, refresh_token = $2, access_expires_at = $3, refresh_at = $4, refreshing_since = NULL, expires_at = $5 WHERE token_hash = $6",
            )
            .bind(&tokens.access_token)
            .bind(&tokens.refresh_token)
            .bind(now + tokens.expires_in)
            .bind(refresh_at(now, tokens.expires_in))
            .bind(now + SESSION_TTL.as_secs() as i64)
            .bind(hash)
            .execute(web.db().writer())
            .await;
            if let Err(err) = stored {
                tracing::warn!(error = %err, "cannot store a session's refreshed tokens");
                return None;
            }
            Row {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                access_expires_at: now + tokens.expires_in,
                refresh_at: refresh_at(now, tokens.expires_in),
                csrf: row.csrf,
            }
            .signed_in()
        }
        // identity refused: the refresh token was revoked or the account
        // deleted. The session is over.
        Err(Failure::Refused(_)) => {
            let _ = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(hash)
                .execute(web.db().writer())
                .await;
            None
        }
        // identity is away: keep the session for later, use the token while
        // it lasts.
        Err(Failure::Unavailable { .. }) => {
            let _ =
                sqlx::query("UPDATE sessions SET refreshing_since = NULL WHERE token_hash = $1")
                    .bind(hash)
                    .execute(web.db().writer())
                    .await;
            (row.access_expires_at > unix_now())
                .then(|| row.signed_in())
                .flatten()
        }
    }
}

/// Another request of this session has refreshed or is refreshing: the
/// row's token as soon as it is valid (the new one, or the old one while it
/// lasts), waiting briefly for the refresh when neither is.
async fn wait_for_refresh(web: &Web, hash: &str) -> Option<(SignedIn, String)> {
    for _ in 0..30 {
        match load(web, hash, unix_now()).await {
            Ok(Some(fresh)) if fresh.access_expires_at > unix_now() => return fresh.signed_in(),
            Ok(Some(_)) => {}
            _ => return None,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// When to refresh a token that lives `expires_in` seconds from `now`.
fn refresh_at(now: i64, expires_in: i64) -> i64 {
    now + expires_in - REFRESH_MARGIN.min(expires_in / 4)
}

/// Starts a session for `tokens`: the row, and the `Set-Cookie` value.
pub async fn start(web: &Web, tokens: &Tokens, secure: bool) -> Result<HeaderValue, PageError> {
    let user = claims(&tokens.access_token).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_GATEWAY,
            "Accounts answered with a token this site cannot read.",
        )
    })?;
    let token = random_token();
    let now = unix_now();
    let ttl = SESSION_TTL.as_secs() as i64;
    let pool = web.db().writer();
    let _ = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, access_token, refresh_token, access_expires_at, refresh_at, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(hash(&token))
    .bind(&user.user_id)
    .bind(&tokens.access_token)
    .bind(&tokens.refresh_token)
    .bind(now + tokens.expires_in)
    .bind(refresh_at(now, tokens.expires_in))
    .bind(random_token())
    .bind(dure_chassis::clock::now())
    .bind(now + ttl)
    .execute(pool)
    .await
    .map_err(|err| {
        tracing::error!(error = %err, "cannot store a session");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is unavailable right now.",
        )
    })?;
    HeaderValue::from_str(&cookie(SESSION_COOKIE, &token, secure, Some(ttl)))
        .map_err(|_| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "Cannot set the cookie."))
}

/// Ends the session of this request (if any): identity forgets its refresh
/// token, the row goes. Answers the `Set-Cookie` value that clears it.
pub async fn end(web: &Web, headers: &HeaderMap, viewer: &Viewer) -> HeaderValue {
    if let Some(token) = Cookies::of(headers).get(SESSION_COOKIE) {
        let hash = hash(token);
        let refresh: Option<(String,)> =
            sqlx::query_as("SELECT refresh_token FROM sessions WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(web.db().pool())
                .await
                .unwrap_or(None);
        if let Some((refresh_token,)) = refresh {
            let call = Call::new(Method::POST, "/api/logout")
                .json(&serde_json::json!({ "refresh_token": refresh_token }));
            if let Err(err) = web
                .backend()
                .send(Svc::Identity, call, viewer.caller())
                .await
            {
                tracing::warn!(error = ?err, "identity did not take the logout; the session ends here anyway");
            }
        }
        let _ = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&hash)
            .execute(web.db().writer())
            .await;
    }
    cleared(viewer.secure)
}

/// Ends every session of `user_id` (its account was deleted).
pub async fn end_all(web: &Web, user_id: &str) {
    let _ = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(web.db().writer())
        .await;
}

/// Makes the next request of this session refresh its token (so that a
/// changed display name shows at once).
pub async fn refresh_soon(web: &Web, headers: &HeaderMap) {
    if let Some(token) = Cookies::of(headers).get(SESSION_COOKIE) {
        let _ = sqlx::query("UPDATE sessions SET refresh_at = 0 WHERE token_hash = $1")
            .bind(hash(token))
            .execute(web.db().writer())
            .await;
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared(secure: bool) -> HeaderValue {
    HeaderValue::from_str(&cookie(SESSION_COOKIE, "", secure, Some(0)))
        .unwrap_or_else(|_| HeaderValue::from_static("dure_session=; Path=/; Max-Age=0"))
}

fn cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The request's cookies.
struct Cookies<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Cookies<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        Self(
            headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The user an access token names. identity handed it to this service
/// directly, so its claims are read without checking its signature; the
/// services it is sent to check that.
fn claims(access_token: &str) -> Option<SignedIn> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        role: String,
    }
    let payload = access_token.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(SignedIn {
        user_id: claims.sub,
        display_name: claims.name,
        admin: claims.role == "admin",
        access_token: access_token.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; dure_session=abc; dure_csrf=x"),
        );
        let cookies = Cookies::of(&headers);
        assert_eq!(cookies.get(SESSION_COOKIE), Some("abc"));
        assert_eq!(cookies.get(CSRF_COOKIE), Some("x"));
        assert_eq!(cookies.get("b"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_over_https() {
        let plain = cookie(SESSION_COOKIE, "t", false, Some(60));
        assert_eq!(
            plain,
            "dure_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(cookie(SESSION_COOKIE, "t", true, None).ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!is_https(&headers));
    }

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &a[..42])));
    }

    #[test]
    fn an_access_tokens_claims_name_the_user() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"u1","name":"Ann","role":"admin"}"#);
        let user = claims(&format!("h.{payload}.s")).expect("claims");
        assert_eq!(user.user_id, "u1");
        assert_eq!(user.display_name, "Ann");
        assert!(user.admin);
        assert!(claims("not-a-jwt").is_none());
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        assert_eq!(refresh_at(1000, 900), 1000 + 900 - 60);
        assert_eq!(refresh_at(1000, 10), 1000 + 10 - 2);
    }

    #[test]
    fn csrf_comparison_needs_equal_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
