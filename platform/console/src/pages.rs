//! The console's pages: server-rendered (askama), one stylesheet and one
//! script under content-hashed names (no inline script); the script keeps
//! the tables live by polling the JSON API. Everything works without it.

use crate::logs::{LogLine, LogQuery};
use crate::resources::{Action, Resource};
use crate::{Console, problem};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

static CSS_NAME: LazyLock<String> = LazyLock::new(|| hashed("console", "css", CSS));
static JS_NAME: LazyLock<String> = LazyLock::new(|| hashed("console", "js", JS));

fn hashed(stem: &str, extension: &str, content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let short: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{short}.{extension}")
}

/// What every page links.
struct Assets {
    css: String,
    js: String,
}

fn assets() -> Assets {
    Assets {
        css: format!("/assets/{}", *CSS_NAME),
        js: format!("/assets/{}", *JS_NAME),
    }
}

#[derive(Template)]
#[template(path = "resources.html")]
struct ResourcesPage {
    assets: Assets,
    resources: Vec<Row>,
    actions: Vec<&'static str>,
}

/// A resource with its figures formatted for the table.
struct Row {
    r: Resource,
    uptime: String,
    cpu: String,
    rss: String,
}

impl From<Resource> for Row {
    fn from(r: Resource) -> Self {
        Self {
            uptime: r.uptime_secs.map_or_else(|| "–".into(), duration),
            cpu: r
                .cpu_percent
                .map_or_else(|| "–".into(), |c| format!("{c:.1} %")),
            rss: r
                .rss_bytes
                .map_or_else(|| "–".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
            r,
        }
    }
}

fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    assets: Assets,
    processes: Vec<String>,
    query: LogQuery,
    levels: [&'static str; 5],
    lines: Vec<LogLine>,
    /// The newest line's position, where the live view goes on from.
    last_seq: u64,
}

impl LogsPage {
    fn selected_process(&self, process: &str) -> bool {
        self.query.process.as_deref() == Some(process)
    }

    fn selected_level(&self, level: &str) -> bool {
        self.query.level.as_deref().unwrap_or("info") == level
    }
}

/// `/`: every process, with its actions.
pub async fn resources(State(console): State<Console>) -> Response {
    render(&ResourcesPage {
        assets: assets(),
        resources: console
            .processes()
            .list()
            .into_iter()
            .map(Row::from)
            .collect(),
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
    })
}

/// `/logs`: the buffer searched by the form's filters.
pub async fn logs(State(console): State<Console>, Query(mut query): Query<LogQuery>) -> Response {
    if query.level.is_none() {
        query.level = Some("info".into());
    }
    let lines = console.logs().search(&query);
    let mut processes: Vec<String> = console
        .processes()
        .list()
        .into_iter()
        .map(|r| r.instance_id)
        .collect();
    processes.dedup();
    render(&LogsPage {
        assets: assets(),
        processes,
        last_seq: lines.last().map_or(0, |l| l.seq),
        levels: ["error", "warn", "info", "debug", "trace"],
        query,
        lines,
    })
}

/// A button of the resources page: the action, then back to the page.
pub async fn act(
    State(console): State<Console>,
    Path((instance_id, action)): Path<(String, String)>,
) -> Response {
    match console.act(&instance_id, &action) {
        Ok(_) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response
                .headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/"));
            response
        }
        Err((status, detail)) => problem(status, &detail),
    }
}

pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = if name == *CSS_NAME {
        (CSS, "text/css; charset=utf-8")
    } else if name == *JS_NAME {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return problem(StatusCode::NOT_FOUND, "no such asset");
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot render: {err}"),
        ),
    }
}

/// Every answer: no inline script, no framing, not cached unless an asset.
pub async fn headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(7300), "2h 1m");
    }
}
