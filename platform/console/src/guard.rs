//! Who may use the console. It can kill every process of the system, so:
//! - on loopback (the default) any local client may, but only under a
//!   loopback `Host` (a page on another site cannot reach it by DNS
//!   rebinding);
//! - on any other address a token is required: `Authorization: Bearer`, or
//!   the `dure_console` cookie set by opening `/?token=…` once;
//! - a state-changing request from a browser must come from the console's
//!   own pages (`Sec-Fetch-Site` and `Origin`), so another site cannot make
//!   a visitor's browser press its buttons. Scripts (curl) send neither.

use crate::Console;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const COOKIE_NAME: &str = "dure_console";

/// The console's access rule.
#[derive(Debug, Clone)]
pub struct Guard {
    /// SHA-256 of the token, when one is required.
    token: Option<[u8; 32]>,
}

impl Guard {
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    fn is_token(&self, presented: &str) -> bool {
        self.token.is_some_and(|expected| {
            expected == <[u8; 32]>::from(Sha256::digest(presented.as_bytes()))
        })
    }

    /// Whether `headers` carry the token (or none is needed).
    fn admits(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)
            .map(|(_, value)| value);
        bearer.into_iter().chain(cookie).any(|t| self.is_token(t))
    }
}

/// A random token of 32 bytes, for `DURE_CONSOLE_TOKEN` when none is set.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub async fn layer(State(console): State<Console>, request: Request, next: Next) -> Response {
    let guard = console.guard();
    let headers = request.headers();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if guard.token.is_none() && !is_loopback_host(&host) {
        return crate::problem(
            StatusCode::FORBIDDEN,
            "the console answers only to a loopback host name",
        );
    }
    // `/?token=…`: set the cookie, then the same page without the token in
    // the address bar (and the browser's history).
    if let Some(token) = token_in_query(request.uri().query())
        && guard.is_token(&token)
    {
        let mut response = StatusCode::SEE_OTHER.into_response();
        let cookie = format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/"));
        return response;
    }
    if !guard.admits(headers) {
        return crate::problem(
            StatusCode::UNAUTHORIZED,
            "this console needs its token: open the address dure up printed, or send Authorization: Bearer <token>",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) && is_cross_site(headers, &host) {
        return crate::problem(
            StatusCode::FORBIDDEN,
            "actions are taken from the console's own pages only",
        );
    }
    next.run(request).await
}

fn token_in_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_owned())
}

/// `127.0.0.1:8090`, `localhost:8090`, `[::1]:8090`, with or without port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_cross_site(headers: &HeaderMap, host: &str) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return true;
    }
    headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            origin != format!("http://{host}") && origin != format!("https://{host}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1:8090",
            "localhost:8090",
            "[::1]:8090",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:8090", "10.0.0.1:8090", "", "[2001:db8::1]:80"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_post_from_another_site_is_cross_site() {
        let mut headers = HeaderMap::new();
        assert!(
            !is_cross_site(&headers, "127.0.0.1:8090"),
            "curl sends neither header"
        );
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8090"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!is_cross_site(&headers, "127.0.0.1:8090"));
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(is_cross_site(&headers, "127.0.0.1:8090"));
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&headers, "127.0.0.1:8090"));
    }

    #[test]
    fn the_token_is_taken_from_the_header_or_the_cookie() {
        let guard = Guard::new(Some("s3cret".into()));
        let mut headers = HeaderMap::new();
        assert!(!guard.admits(&headers));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(guard.admits(&headers));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=b; dure_console=s3cret"));
        assert!(guard.admits(&headers));
        headers.insert(COOKIE, HeaderValue::from_static("dure_console=wrong"));
        assert!(!guard.admits(&headers));
        assert!(Guard::new(None).admits(&HeaderMap::new()));
        assert_eq!(token_in_query(Some("a=1&token=xyz")), Some("xyz".into()));
    }
}
