//! The console's pages: server-rendered (askama), one stylesheet and one
//! script under content-hashed names (no inline script); the script keeps
//! the tables live by polling the JSON API. Everything works without it.

use crate::logs::{LogLine, LogQuery};
use crate::metrics::{BreakerState, Consumer, Producer, RouteStats};
use crate::resources::{Action, Resource};
use crate::traces::{Edge, TraceQuery, TraceSummary};
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

#[derive(Template)]
#[template(path = "traces.html")]
struct TracesPage {
    assets: Assets,
    services: Vec<String>,
    query: TraceQuery,
    traces: Vec<TraceSummary>,
    elsewhere: Option<String>,
}

impl TracesPage {
    fn selected(&self, service: &str) -> bool {
        self.query.service.as_deref() == Some(service)
    }
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    assets: Assets,
    trace_id: String,
    total_ms: f64,
    services: Vec<String>,
    bars: Vec<Bar>,
    height: usize,
}

/// One row of the waterfall, placed in the SVG's coordinates.
struct Bar {
    y: usize,
    text_y: usize,
    label: String,
    x: f64,
    width: f64,
    /// The colour class of its service.
    class: String,
    duration: String,
    error: bool,
    details: String,
}

/// Waterfall geometry: labels left of `LABEL_WIDTH`, bars to `WIDTH`.
const LABEL_WIDTH: f64 = 360.0;
const WIDTH: f64 = 1100.0;
const ROW: usize = 22;

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    assets: Assets,
    window: f64,
    routes: Vec<RouteRow>,
    charts: Vec<Chart>,
    breakers: Vec<BreakerState>,
}

struct RouteRow {
    s: RouteStats,
    rate: String,
    errors: String,
    p50: String,
    p99: String,
}

/// A process's requests per second over the kept minutes, as an SVG line.
struct Chart {
    instance_id: String,
    points: String,
    peak: String,
}

const CHART_WIDTH: f64 = 300.0;
const CHART_HEIGHT: f64 = 60.0;

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    assets: Assets,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    sagas: Vec<crate::metrics::Sagas>,
}

#[derive(Template)]
#[template(path = "topology.html")]
struct TopologyPage {
    assets: Assets,
    edges: Vec<Edge>,
    graph: Graph,
}

/// The services laid out in columns by how far they are from the callers
/// that nobody calls (the gateway first), edges as arrows between them.
struct Graph {
    width: f64,
    height: f64,
    nodes: Vec<Node>,
    arrows: Vec<Arrow>,
}

struct Node {
    name: String,
    x: f64,
    y: f64,
    text_x: f64,
    text_y: f64,
}

struct Arrow {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    label_x: f64,
    label_y: f64,
    kind: &'static str,
    count: usize,
}

const NODE_WIDTH: f64 = 130.0;
const NODE_HEIGHT: f64 = 34.0;
const COLUMN: f64 = 230.0;
const ROW_GAP: f64 = 70.0;

fn layout(edges: &[Edge]) -> Graph {
    let mut names: Vec<String> = Vec::new();
    for edge in edges {
        for name in [&edge.from, &edge.to] {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    // Column: how few edges lead to the node from one that nobody calls
    // (the gateway); cycles (a consumer pulling its producer's feed) do not
    // move anything further right.
    let sources: Vec<usize> = (0..names.len())
        .filter(|&i| !edges.iter().any(|e| e.to == names[i]))
        .collect();
    let mut column: Vec<Option<usize>> = vec![None; names.len()];
    let mut frontier: Vec<usize> = if sources.is_empty() && !names.is_empty() {
        vec![0]
    } else {
        sources
    };
    for &i in &frontier {
        column[i] = Some(0);
    }
    let mut depth = 0;
    while !frontier.is_empty() {
        depth += 1;
        let mut next = Vec::new();
        for edge in edges {
            let from = names.iter().position(|n| *n == edge.from).unwrap_or(0);
            let to = names.iter().position(|n| *n == edge.to).unwrap_or(0);
            if frontier.contains(&from) && column[to].is_none() {
                column[to] = Some(depth);
                next.push(to);
            }
        }
        frontier = next;
    }
    let column: Vec<usize> = column.into_iter().map(|c| c.unwrap_or(0)).collect();
    let mut rows_used: Vec<usize> = vec![0; names.len()];
    let mut place: Vec<(f64, f64)> = Vec::new();
    for col in column.iter().copied() {
        let row = rows_used[col];
        rows_used[col] += 1;
        place.push((20.0 + col as f64 * COLUMN, 20.0 + row as f64 * ROW_GAP));
    }
    let nodes = names
        .iter()
        .zip(&place)
        .map(|(name, &(x, y))| Node {
            name: name.clone(),
            x,
            y,
            text_x: x + NODE_WIDTH / 2.0,
            text_y: y + NODE_HEIGHT / 2.0 + 5.0,
        })
        .collect::<Vec<_>>();
    let arrows = edges
        .iter()
        .map(|edge| {
            let at = |name: &str| place[names.iter().position(|n| n == name).unwrap_or(0)];
            let (fx, fy) = at(&edge.from);
            let (tx, ty) = at(&edge.to);
            // A pair of opposite edges is drawn apart.
            let apart = if edges.iter().any(|e| e.from == edge.to && e.to == edge.from) {
                if edge.from < edge.to { -5.0 } else { 5.0 }
            } else {
                0.0
            };
            let (fy, ty) = (fy + apart, ty + apart);
            // Right to left across columns; within one, bottom to top.
            let ((x1, y1), (x2, y2)) = if tx > fx {
                (
                    (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2.0),
                    (tx, ty + NODE_HEIGHT / 2.0),
                )
            } else if tx < fx {
                (
                    (fx, fy + NODE_HEIGHT / 2.0),
                    (tx + NODE_WIDTH, ty + NODE_HEIGHT / 2.0),
                )
            } else if ty > fy {
                (
                    (fx + NODE_WIDTH / 2.0 - 15.0, fy + NODE_HEIGHT),
                    (tx + NODE_WIDTH / 2.0 - 15.0, ty),
                )
            } else {
                (
                    (fx + NODE_WIDTH / 2.0 + 15.0, fy),
                    (tx + NODE_WIDTH / 2.0 + 15.0, ty + NODE_HEIGHT),
                )
            };
            Arrow {
                x1,
                y1,
                x2,
                y2,
                label_x: (x1 + x2) / 2.0,
                label_y: (y1 + y2) / 2.0 - 4.0,
                kind: edge.kind,
                count: edge.count,
            }
        })
        .collect();
    let width = place.iter().map(|p| p.0).fold(0.0, f64::max) + NODE_WIDTH + 40.0;
    let height = place.iter().map(|p| p.1).fold(0.0, f64::max) + NODE_HEIGHT + 40.0;
    Graph {
        width,
        height,
        nodes,
        arrows,
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

/// `/traces`: the newest traces, filtered.
pub async fn traces(State(console): State<Console>, Query(query): Query<TraceQuery>) -> Response {
    let mut services: Vec<String> = console
        .processes()
        .list()
        .into_iter()
        .map(|r| r.service)
        .collect();
    services.dedup();
    render(&TracesPage {
        assets: assets(),
        services,
        traces: console.traces().list(&query),
        query,
        elsewhere: console.traces_elsewhere().map(str::to_owned),
    })
}

/// `/traces/{id}`: one trace as a waterfall across processes.
pub async fn trace(State(console): State<Console>, Path(trace_id): Path<String>) -> Response {
    let Some(spans) = console.traces().trace(&trace_id) else {
        return problem(StatusCode::NOT_FOUND, "no such trace (or no longer kept)");
    };
    let total_ms = spans
        .iter()
        .map(|s| s.offset_ms + s.duration_ms)
        .fold(0.0, f64::max)
        .max(0.001);
    let mut services: Vec<String> = Vec::new();
    for span in &spans {
        if !services.contains(&span.service) {
            services.push(span.service.clone());
        }
    }
    let scale = (WIDTH - LABEL_WIDTH) / total_ms;
    let bars = spans
        .iter()
        .enumerate()
        .map(|(row, span)| Bar {
            y: row * ROW + 4,
            text_y: row * ROW + 17,
            label: format!(
                "{}{}: {}",
                "  ".repeat(span.depth.min(12)),
                span.service,
                span.name
            ),
            x: LABEL_WIDTH + span.offset_ms * scale,
            width: (span.duration_ms * scale).max(1.0),
            class: format!(
                "s{}",
                services
                    .iter()
                    .position(|s| *s == span.service)
                    .unwrap_or(0)
                    % 8
            ),
            duration: format!("{:.2} ms", span.duration_ms),
            error: span.error,
            details: span
                .attributes
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(text) => format!("{k}={text}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect::<Vec<_>>();
    render(&TracePage {
        assets: assets(),
        height: bars.len() * ROW + 8,
        trace_id,
        total_ms,
        services,
        bars,
    })
}

/// `/metrics`: rate, errors and latency per route; each process's load.
pub async fn metrics(State(console): State<Console>) -> Response {
    let metrics = console.metrics();
    let ms = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.2} ms"));
    let routes = metrics
        .routes()
        .into_iter()
        .map(|s| RouteRow {
            rate: format!("{:.1}/s", s.rate),
            errors: format!("{:.2}/s", s.error_rate),
            p50: ms(s.p50_ms),
            p99: ms(s.p99_ms),
            s,
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let span = crate::metrics::EVERY.as_secs_f64() * crate::metrics::KEPT as f64;
    let charts = metrics
        .rates()
        .into_iter()
        .map(|(instance_id, points)| {
            let peak = points.iter().map(|(_, r)| *r).fold(1.0, f64::max);
            let points = points
                .iter()
                .map(|(at, rate)| {
                    let x = (CHART_WIDTH - (now - at) / span * CHART_WIDTH).max(0.0);
                    let y = CHART_HEIGHT - rate / peak * (CHART_HEIGHT - 2.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect::<Vec<_>>()
                .join(" ");
            Chart {
                instance_id,
                points,
                peak: format!("{peak:.1}/s"),
            }
        })
        .collect();
    render(&MetricsPage {
        assets: assets(),
        window: crate::metrics::WINDOW,
        routes,
        charts,
        breakers: metrics.breakers(),
    })
}

/// `/events`: producers' positions; consumers' positions, lag, failures.
pub async fn events(State(console): State<Console>) -> Response {
    let (producers, consumers) = console.metrics().events();
    render(&EventsPage {
        assets: assets(),
        producers,
        consumers,
        sagas: console.metrics().sagas(),
    })
}

/// `/topology`: which service calls or feeds which, as seen in traces.
pub async fn topology(State(console): State<Console>) -> Response {
    let edges = console.traces().edges();
    render(&TopologyPage {
        assets: assets(),
        graph: layout(&edges),
        edges,
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
    fn the_topology_is_laid_out_left_to_right() {
        let edge = |from: &str, to: &str, kind| Edge {
            from: from.into(),
            to: to.into(),
            kind,
            count: 1,
        };
        let graph = layout(&[
            edge("gateway", "posting", "call"),
            edge("posting", "notification", "event"),
            edge("gateway", "identity", "call"),
        ]);
        let x = |name: &str| graph.nodes.iter().find(|n| n.name == name).unwrap().x;
        assert!(x("gateway") < x("posting") && x("posting") < x("notification"));
        assert_eq!(x("posting"), x("identity"));
        assert_eq!(graph.arrows.len(), 3);
        // A cycle (notification pulls posting's feed) moves nothing.
        let cyclic = layout(&[
            edge("gateway", "posting", "call"),
            edge("posting", "notification", "event"),
            edge("notification", "posting", "call"),
        ]);
        let cx = |name: &str| cyclic.nodes.iter().find(|n| n.name == name).unwrap().x;
        assert!(cx("gateway") < cx("posting") && cx("posting") < cx("notification"));
        assert!(layout(&[]).nodes.is_empty());
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(7300), "2h 1m");
    }
}
