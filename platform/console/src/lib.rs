//! The operator console of `dure up`: every process it runs, their logs,
//! their traces, and actions on them (restart, stop, start, kill, pause,
//! resume), as web pages and as JSON for scripts, on its own port
//! (docs/console.md).
//!
//! The console does not start or watch processes itself: the supervisor
//! that does (the CLI's `dure up`) hands it a [`Processes`] and feeds a
//! [`LogBuffer`] with every line its children write; the children export
//! their spans to the console's OTLP receiver, kept in a [`TraceStore`].
//!
//! # Layout
//! - [`Console`] (here): the state, the router and [`serve`].
//! - [`resources`]: what a process looks like, the actions, the
//!   supervisor's trait.
//! - [`logs`]: parsing children's JSON lines, the bounded buffer, search.
//! - [`traces`]: the OTLP/HTTP receiver's decoding, the bounded trace
//!   store, summaries, waterfalls and the services' edges.
//! - [`metrics`]: scraping every process's `/metrics` and feed position;
//!   rates, percentiles, breakers, event positions and lag.
//! - [`guard`]: who may call: loopback or a token, and no cross-site POST.
//! - [`pages`]: the HTML pages and their assets.

#![forbid(unsafe_code)]

pub mod guard;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod resources;
pub mod traces;

pub use logs::{LogBuffer, LogLine, LogQuery};
pub use metrics::Metrics;
pub use resources::{Action, Processes, Refusal, Resource, State};
pub use traces::{TraceQuery, TraceStore};

use axum::Router;
use axum::extract::{Path, Query, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The console's state, shared by its handlers.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Sources,
    guard: guard::Guard,
}

/// What the console shows.
pub struct Sources {
    pub processes: Arc<dyn Processes>,
    pub logs: Arc<LogBuffer>,
    pub traces: Arc<TraceStore>,
    pub metrics: Arc<Metrics>,
    /// Where the processes send their traces instead of the console, when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` was set for them.
    pub traces_elsewhere: Option<String>,
}

impl Console {
    /// A console over `sources`; `token`, when set, is required of every
    /// request (for a console on a non-loopback address).
    pub fn new(sources: Sources, token: Option<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sources,
                guard: guard::Guard::new(token),
            }),
        }
    }

    pub fn traces(&self) -> &TraceStore {
        &self.inner.sources.traces
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.sources.metrics
    }

    /// Scrapes every running process every [`metrics::EVERY`], until the
    /// task is aborted.
    pub fn spawn_scraper(&self) -> tokio::task::JoinHandle<()> {
        let console = self.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(1))
                .build()
                .unwrap_or_default();
            let mut every = tokio::time::interval(metrics::EVERY);
            loop {
                every.tick().await;
                let targets: Vec<metrics::Target> = console
                    .processes()
                    .list()
                    .into_iter()
                    .filter(|r| matches!(r.state, State::Running | State::Unready))
                    .map(|r| metrics::Target {
                        instance_id: r.instance_id,
                        service: r.service,
                        address: r.address,
                    })
                    .collect();
                metrics::scrape(&client, console.metrics(), &targets).await;
            }
        })
    }

    pub fn traces_elsewhere(&self) -> Option<&str> {
        self.inner.sources.traces_elsewhere.as_deref()
    }

    pub fn processes(&self) -> &dyn Processes {
        self.inner.sources.processes.as_ref()
    }

    pub fn logs(&self) -> &LogBuffer {
        &self.inner.sources.logs
    }

    pub fn guard(&self) -> &guard::Guard {
        &self.inner.guard
    }

    /// The pages, the JSON API, and the guard in front of both.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(pages::resources))
            .route("/logs", get(pages::logs))
            .route("/resources/{instance_id}/{action}", post(pages::act))
            .route("/assets/{name}", get(pages::asset))
            .route("/api/resources", get(resources_json))
            .route("/api/resources/{instance_id}/{action}", post(act_json))
            .route("/api/logs", get(logs_json))
            .route("/traces", get(pages::traces))
            .route("/traces/{trace_id}", get(pages::trace))
            .route("/topology", get(pages::topology))
            .route("/api/traces", get(traces_json))
            .route("/api/traces/{trace_id}", get(trace_json))
            .route("/api/topology", get(topology_json))
            .route("/metrics", get(pages::metrics))
            .route("/events", get(pages::events))
            .route("/api/metrics", get(metrics_json))
            .route("/api/events", get(events_json))
            .route(
                "/v1/traces",
                post(receive_traces).layer(axum::extract::DefaultBodyLimit::max(16 << 20)),
            )
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                guard::layer,
            ))
            .layer(axum::middleware::map_response(pages::headers))
            .with_state(self.clone())
    }

    /// Carries out `action` on `instance_id`, as both the API and the pages do.
    pub fn act(&self, instance_id: &str, action: &str) -> Result<Action, (StatusCode, String)> {
        let action: Action = action
            .parse()
            .map_err(|err: String| (StatusCode::NOT_FOUND, err))?;
        match self.processes().act(instance_id, action) {
            Ok(()) => {
                tracing::info!(instance_id, action = action.as_str(), "console action");
                Ok(action)
            }
            Err(Refusal::Unknown) => Err((
                StatusCode::NOT_FOUND,
                format!("there is no process {instance_id:?}"),
            )),
            Err(Refusal::Conflict(why)) => Err((StatusCode::CONFLICT, why)),
        }
    }
}

/// Serves `console` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    console: Console,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = console
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn resources_json(Shared(console): Shared<Console>) -> Response {
    axum::Json(json!({ "resources": console.processes().list() })).into_response()
}

async fn act_json(
    Shared(console): Shared<Console>,
    Path((instance_id, action)): Path<(String, String)>,
) -> Response {
    match console.act(&instance_id, &action) {
        Ok(action) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "instance_id": instance_id, "action": action.as_str() })),
        )
            .into_response(),
        Err((status, detail)) => problem(status, &detail),
    }
}

async fn logs_json(Shared(console): Shared<Console>, Query(query): Query<LogQuery>) -> Response {
    axum::Json(json!({ "lines": console.logs().search(&query) })).into_response()
}

async fn traces_json(
    Shared(console): Shared<Console>,
    Query(query): Query<TraceQuery>,
) -> Response {
    axum::Json(json!({ "traces": console.traces().list(&query) })).into_response()
}

async fn trace_json(Shared(console): Shared<Console>, Path(trace_id): Path<String>) -> Response {
    match console.traces().trace(&trace_id) {
        Some(spans) => axum::Json(json!({ "spans": spans })).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no such trace (or no longer kept)"),
    }
}

async fn metrics_json(Shared(console): Shared<Console>) -> Response {
    let metrics = console.metrics();
    axum::Json(json!({
        "window_secs": metrics::WINDOW,
        "routes": metrics.routes(),
        "breakers": metrics.breakers(),
    }))
    .into_response()
}

async fn events_json(Shared(console): Shared<Console>) -> Response {
    let (producers, consumers) = console.metrics().events();
    let sagas = console.metrics().sagas();
    axum::Json(json!({ "producers": producers, "consumers": consumers, "sagas": sagas }))
        .into_response()
}

async fn topology_json(Shared(console): Shared<Console>) -> Response {
    axum::Json(json!({ "edges": console.traces().edges() })).into_response()
}

/// `POST /v1/traces`: an OTLP/HTTP export, protobuf or JSON.
async fn receive_traces(
    Shared(console): Shared<Console>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use prost::Message;
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request = if json {
        traces::from_json(&body)
    } else {
        traces::otlp::ExportTraceServiceRequest::decode(body.as_ref()).map_err(|e| e.to_string())
    };
    match request {
        Ok(request) => {
            console.traces().add(&request);
            if json {
                (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    "{}",
                )
                    .into_response()
            } else {
                // An empty ExportTraceServiceResponse.
                (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    "",
                )
                    .into_response()
            }
        }
        Err(err) => problem(
            StatusCode::BAD_REQUEST,
            &format!("not an OTLP trace export: {err}"),
        ),
    }
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such page or endpoint")
}

/// An error answer of the JSON API (RFC 9457).
pub fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
