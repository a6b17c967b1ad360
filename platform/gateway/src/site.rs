//! The gateway's own answers to a browser. A request outside `/api/` is for
//! the web app's pages; when the gateway cannot pass it on (the web app is
//! down, its breaker open, too slow, or the client over its rate), it
//! answers with a small HTML page instead of problem+json, with the same
//! status and `Retry-After`.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

/// Whether `path` is a page rather than an API call.
pub fn is_page(path: &str) -> bool {
    path != "/api" && !path.starts_with("/api/")
}

/// `problem` (a problem+json answer of the gateway) as an HTML page.
pub async fn error_page(problem: Response) -> Response {
    let (mut parts, body) = problem.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let html = page(parts.status, &detail);
    let headers = &mut parts.headers;
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}

fn page(status: StatusCode, detail: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let sentence = match status {
        StatusCode::NOT_FOUND => "There is no such page.",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
            "The site is unavailable right now. Try again in a few seconds."
        }
        StatusCode::GATEWAY_TIMEOUT => "The site took too long to answer. Try again.",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests from your address. Wait a moment.",
        StatusCode::PAYLOAD_TOO_LARGE => "That was too large to send.",
        _ => "The request could not be served.",
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{reason} · dure</title></head>\n<body><h1>{reason}</h1><p role=\"alert\">{sentence}</p><p>{}</p><p><a href=\"/\">Back to the board</a></p></body></html>\n",
        escape(detail)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use dure_chassis::ApiError;

    #[test]
    fn pages_are_everything_outside_the_api() {
        assert!(is_page("/"));
        assert!(is_page("/postings/1"));
        assert!(is_page("/apis"));
        assert!(!is_page("/api"));
        assert!(!is_page("/api/postings"));
    }

    #[tokio::test]
    async fn a_problem_becomes_a_page_with_its_status_and_retry_after() {
        let problem = ApiError::CircuitOpen {
            detail: "web is failing; <not> calling it".into(),
            retry_after: std::time::Duration::from_secs(5),
        }
        .into_response();
        let page = error_page(problem).await;
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers()["retry-after"], "5");
        assert!(
            page.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = axum::body::to_bytes(page.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("The site is unavailable right now."),
            "{body}"
        );
        assert!(
            body.contains("&lt;not&gt;") && !body.contains("<not>"),
            "{body}"
        );
    }
}
