//! Per-request bookkeeping: request id, span, log line, RED metrics.

use crate::error::ApiError;
use crate::telemetry::trace::{self, ServerSpan};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// `X-Request-Id`: kept when the client sent a sane one, generated otherwise,
/// always echoed on the response.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route a response belongs to, for handlers that route by themselves
/// (the gateway's proxy): set it on the response and the request is counted
/// under it rather than as `unmatched`.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Routes called every few seconds by machines (probes, scrapers, the
/// registry's heartbeats and watches): logged at debug, not info, and not
/// traced.
const QUIET_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/instances/{instance_id}/heartbeat",
    "/v1/services",
    "/v1/prometheus-targets",
];

/// The middleware form of [`Observation`], for axum routers: the route is
/// the router's template.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let authenticated = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let observation = Observation::begin(&mut request, route);
    let response = observation.run(next.run(request)).await;
    let mut response = observation.finish(response);
    if authenticated {
        // An answer for one caller must not be kept by a shared cache or
        // the browser (OWASP API8: security misconfiguration).
        response
            .headers_mut()
            .entry(axum::http::header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

/// One request's bookkeeping, from its head arriving to its response head
/// leaving: the request id, the span, the log line and the RED metrics.
/// [`observe`] wraps a router in it; a server that routes by itself (the
/// gateway's proxy) calls [`begin`](Self::begin) and
/// [`finish`](Self::finish) around its handler.
pub struct Observation {
    /// The span exported for the request.
    server: ServerSpan,
    /// The span its log lines are written in.
    span: tracing::Span,
    request_id: HeaderValue,
    method: Method,
    route: String,
    started: Instant,
}

impl Observation {
    /// Gives `request` its request id and opens its span under `route`.
    pub fn begin<B>(request: &mut axum::http::Request<B>, route: String) -> Self {
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .filter(|value| is_sane_request_id(value))
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_str(&new_request_id().to_string())
                    .expect("a UUID is a valid header value")
            });
        request
            .headers_mut()
            .insert(REQUEST_ID.clone(), request_id.clone());
        let method = request.method().clone();
        let id = request_id.to_str().unwrap_or_default();
        // Field names follow OpenTelemetry's semantic conventions, so the
        // log line and the exported span say the same. Probes' spans are
        // debug, not logged at the default level, and not exported.
        let quiet = QUIET_ROUTES.contains(&route.as_str());
        let server = if quiet {
            ServerSpan::none()
        } else {
            ServerSpan::start(
                request.headers(),
                || [method.as_str(), " ", &route].concat(),
                &[
                    ("http.request.method", method.as_str()),
                    ("http.route", &route),
                    ("request_id", id),
                ],
            )
        };
        let span = if quiet {
            tracing::debug_span!(
                target: trace::REQUEST_LINES,
                "request",
                http.request.method = method.as_str(),
                http.route = route.as_str(),
                request_id = id,
            )
        } else {
            tracing::info_span!(
                target: trace::REQUEST_LINES,
                "request",
                http.request.method = method.as_str(),
                http.route = route.as_str(),
                request_id = id,
            )
        };
        Self {
            server,
            span,
            request_id,
            method,
            route,
            started: Instant::now(),
        }
    }

    /// Runs the request's handling, `future`, inside its spans.
    pub fn run<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        self.server.scope(future.instrument(self.span.clone()))
    }

    /// Echoes the request id on `response`, then records the status, the
    /// log line and the metrics, under the response's [`RouteLabel`] if it
    /// has one.
    pub fn finish(self, mut response: Response) -> Response {
        let Self {
            server,
            span,
            request_id,
            method,
            route,
            started,
        } = self;
        let elapsed = started.elapsed();
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID.clone(), request_id);
        // No browser may guess another type than the one declared.
        headers
            .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
            .or_insert(axum::http::HeaderValue::from_static("nosniff"));

        let label = response
            .extensions_mut()
            .remove::<RouteLabel>()
            .map(|label| label.0);
        let status = response.status().as_u16();
        server.response_status(status);
        if let Some(label) = label.as_ref().filter(|label| **label != route) {
            server.set_route(|| [method.as_str(), " ", label].concat(), label);
            span.record("http.route", label.as_str());
        }
        let route = label.unwrap_or(route);
        // Microsecond precision is plenty for a log line.
        let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        // The line's parent is named rather than entered: entering costs
        // even when the line is filtered out.
        server.in_scope(|| {
            if QUIET_ROUTES.contains(&route.as_str()) {
                tracing::debug!(parent: &span, status, latency_ms, "request");
            } else if status >= 500 {
                tracing::warn!(parent: &span, status, latency_ms, "request");
            } else {
                tracing::info!(parent: &span, status, latency_ms, "request");
            }
        });
        let (requests, duration) = red_metrics(method.as_str(), route, status);
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
        response
    }
}

/// Most routes see a handful of method and status pairs.
const CACHED_PER_ROUTE: usize = 32;

thread_local! {
    /// The request counter and duration histogram of each route, method and
    /// status seen on this thread: looking them up in the recorder hashes
    /// their labels, on every request.
    static RED: RefCell<HashMap<String, Vec<Handles>>> = RefCell::new(HashMap::new());
}

/// A method and status on one route, and their metric handles.
type Handles = (String, u16, Counter, Histogram);

fn red_metrics(method: &str, route: String, status: u16) -> (Counter, Histogram) {
    RED.with_borrow_mut(|cache| {
        let seen = cache.get(&route).and_then(|pairs| {
            pairs
                .iter()
                .find(|(m, s, _, _)| m == method && *s == status)
                .map(|(_, _, counter, histogram)| (counter.clone(), histogram.clone()))
        });
        if let Some(handles) = seen {
            return handles;
        }
        let labels = [
            ("http_request_method", method.to_owned()),
            ("http_route", route.clone()),
            ("http_response_status_code", status.to_string()),
        ];
        let counter = metrics::counter!("http_server_requests_total", &labels);
        let histogram = metrics::histogram!("http_server_request_duration_seconds", &labels);
        let pairs = cache.entry(route).or_default();
        if pairs.len() < CACHED_PER_ROUTE {
            pairs.push((
                method.to_owned(),
                status,
                counter.clone(),
                histogram.clone(),
            ));
        }
        (counter, histogram)
    })
}

/// A UUIDv7 whose random part comes from the thread's generator: `now_v7`
/// asks the kernel for randomness on every call, a system call per request.
fn new_request_id() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid()
}

/// Printable ASCII, at most 128 characters: anything else is replaced, so a
/// client cannot inject junk into every log line.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A panicking handler answers 500 like any other internal error.
pub fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
