//! Serving a service over HTTP: the parts every dure process shares.
//!
//! [`ServiceApp`] wraps a service's API router with the standard endpoints
//! (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) and the standard
//! layers (request id, one log line and metrics per request, panic catching,
//! body limit, problem+json for unknown routes). [`serve`] runs it on an
//! already-bound listener until a shutdown future resolves, then lets
//! in-flight requests finish within a grace period.
//!
//! # Layout
//! - [`observe`]: request id, the request span, the log line and RED metrics.
//! - [`body`]: the request body read whole before the handler runs, so an
//!   early answer is never lost to a connection reset.
//! - [`json`]: a `Json` extractor whose rejections are problem+json.
//! - [`client_addr`]: the client's address, trusting `X-Forwarded-For` only
//!   from configured proxies.

pub mod body;
pub mod client_addr;
pub mod json;
pub mod observe;

pub use client_addr::{ClientAddr, IpNet, TrustedProxies};
pub use json::{Json, Query};
pub use observe::{REQUEST_ID, RouteLabel};

use crate::error::ApiError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dure_contracts::registry::Descriptor;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;

/// Answers whether the service can serve now (database reachable, …).
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Request bodies above this many bytes get 413 unless a service sets its
/// own. The largest valid body (a 20,000-character posting, every character
/// escaped as a 12-byte surrogate pair) fits.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// A service's API plus everything a dure process serves around it.
pub struct ServiceApp {
    api: Router,
    openapi: Option<utoipa::openapi::OpenApi>,
    readiness: Option<Readiness>,
    descriptor: Option<Descriptor>,
    registered: Option<watch::Receiver<bool>>,
    body_limit: usize,
    trusted_proxies: TrustedProxies,
    /// Run before `/metrics` renders, to bring gauges up to date.
    scrape: Vec<fn()>,
}

impl ServiceApp {
    pub fn new(api: Router) -> Self {
        Self {
            api,
            openapi: None,
            readiness: None,
            descriptor: None,
            registered: None,
            body_limit: DEFAULT_BODY_LIMIT,
            trusted_proxies: TrustedProxies::default(),
            scrape: Vec::new(),
        }
    }

    /// Calls `update` before each `/metrics` answer (e.g. pool gauges).
    pub fn on_scrape(mut self, update: fn()) -> Self {
        self.scrape.push(update);
        self
    }

    /// The document served at `/openapi.json`, completed with the answers
    /// of the layers around the handlers ([`crate::openapi::complete`]).
    pub fn openapi(mut self, doc: utoipa::openapi::OpenApi) -> Self {
        self.openapi = Some(doc);
        self
    }

    /// What `/readyz` checks; without one, ready means alive.
    pub fn readiness(mut self, check: Readiness) -> Self {
        self.readiness = Some(check);
        self
    }

    /// The service's own readiness check, without registration.
    pub fn readiness_check(&self) -> Option<Readiness> {
        self.readiness.clone()
    }

    /// Served at `/internal/descriptor`.
    pub fn descriptor(mut self, descriptor: Descriptor) -> Self {
        self.descriptor = Some(descriptor);
        self
    }

    /// `/readyz` also waits for this to become true (registered in discovery).
    pub fn registration(mut self, registered: watch::Receiver<bool>) -> Self {
        self.registered = Some(registered);
        self
    }

    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    pub fn into_router(self) -> Router {
        // Install the recorder now: metrics recorded before it exists are lost.
        crate::telemetry::prometheus();
        let mut openapi = serde_json::to_value(self.openapi.unwrap_or_default())
            .expect("an OpenAPI document always serializes");
        crate::openapi::complete(&mut openapi);
        let openapi = Arc::new(openapi);
        let readiness = self.readiness;
        let body_limit = self.body_limit;
        let registered = self.registered;
        let mut api = self.api;
        if let Some(descriptor) = self.descriptor {
            let descriptor = Arc::new(descriptor);
            api = api.route(
                "/internal/descriptor",
                get(move || {
                    let descriptor = descriptor.clone();
                    async move { axum::Json(descriptor.as_ref().clone()) }
                }),
            );
        }
        api = api
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        api.route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                let registered = registered.clone();
                async move { ready(readiness, registered).await }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let scrape = self.scrape.clone();
                async move { metrics(&scrape) }
            }),
        )
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .layer(DefaultBodyLimit::max(self.body_limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            body::read_whole(body_limit, request, next)
        }))
        .layer(Extension(self.trusted_proxies))
        .layer(CatchPanicLayer::custom(observe::panic_to_problem))
        .layer(axum::middleware::from_fn(observe::observe))
    }
}

async fn ready(
    readiness: Option<Readiness>,
    registered: Option<watch::Receiver<bool>>,
) -> Response {
    let verdict = match readiness {
        Some(check) => check().await,
        None => Ok(()),
    };
    let verdict = verdict.and_then(|()| match registered {
        Some(registered) if !*registered.borrow() => {
            Err("not registered with the registry yet".to_owned())
        }
        _ => Ok(()),
    });
    match verdict {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => ApiError::Unavailable(format!("not ready: {reason}")).into_response(),
    }
}

fn metrics(scrape: &[fn()]) -> Response {
    crate::telemetry::record_process_metrics();
    for update in scrape {
        update();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> Response {
    let mut response = crate::error::problem_response(
        dure_contracts::Problem::new("method-not-allowed", "Method Not Allowed", 405)
            .with_detail("this route does not accept that method"),
    );
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting,
/// lets in-flight requests finish for up to `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async {
            // Only once shutdown has begun does the grace period run.
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "requests still in flight after the grace period; closing them");
            Ok(())
        }
    }
}

/// Resolves on ctrl-c or SIGTERM: what stops a dure process gracefully.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
