//! Serving the gateway's connections.
//!
//! A proxied request goes from hyper straight to the proxy, inside the same
//! per-request bookkeeping every dure service has ([`Observation`]: request
//! id, span, log line, RED metrics) and with a panic answered as a 500
//! problem. Only the paths the gateway answers itself go through its axum
//! router. The router's layers and per-request boxing cost about as much
//! CPU as the rest of a proxied request's handling in user space, and the
//! gateway exists to proxy (docs/benchmarks.md).

use crate::Gateway;
use crate::proxy::ClientIp;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use dure_chassis::http::observe::{Observation, panic_to_problem};
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The paths of the gateway's own router; everything else is proxied (or
/// answered 404 when no service owns it).
const OWN_PATHS: &[&str] = &[
    "/api/openapi.json",
    "/api/home",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/internal/descriptor",
];

/// Serves `gateway` on `listener`, with `router` for its own paths, until
/// `shutdown` resolves; then stops accepting and lets open requests finish
/// for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    // HTTP/1.1, as every dure service speaks; the proxy passes no upgrades.
    let builder = http1::Builder::new();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses leave in one write; waiting for more would only add
        // latency.
        let _ = stream.set_nodelay(true);
        let connection = Arc::new(Connection {
            gateway: gateway.clone(),
            router: router.clone(),
            peer,
            forwarded_for: ClientIp::new(peer.ip()),
        });
        let service = hyper::service::service_fn(move |request| connection.clone().call(request));
        let serving = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away mid-request is not the gateway's error.
            let _ = serving.await;
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "requests still in flight after the grace period; closing them");
        }
    }
    Ok(())
}

/// A connection that failed before it was accepted concerns that client
/// only; anything else (out of file descriptors) is worth a pause.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed; pausing");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What every request on one client connection shares.
struct Connection {
    gateway: Gateway,
    router: Router,
    peer: SocketAddr,
    forwarded_for: ClientIp,
}

impl Connection {
    async fn call(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Result<Response, Infallible> {
        let mut request = request.map(Body::new);
        if OWN_PATHS.contains(&request.uri().path()) {
            request.extensions_mut().insert(ConnectInfo(self.peer));
            let router = self.router.clone();
            return router.oneshot(request).await;
        }
        // Known before the span opens, so that it is named once.
        let upstreams = self.gateway.upstreams();
        let route = upstreams
            .matching(request.uri().path())
            .map_or("unmatched", |(prefix, _)| prefix)
            .to_owned();
        let page = crate::site::is_page(request.uri().path());
        let observation = Observation::begin(&mut request, route);
        let client = self
            .gateway
            .config
            .service
            .trusted_proxies
            .client_of(self.peer.ip(), request.headers());
        // Boxed once here: the proxy's future is several kilobytes, and
        // every wrapper around it, and hyper's own box, would copy it again.
        let handling = Box::pin(crate::handle(
            &self.gateway,
            upstreams,
            client,
            &self.forwarded_for,
            request,
        ));
        let handled = observation
            .run(AssertUnwindSafe(handling).catch_unwind())
            .await;
        let response = match handled {
            Ok(Ok(response)) => response,
            Ok(Err(err)) if page => crate::site::error_page(err.into_response()).await,
            Ok(Err(err)) => err.into_response(),
            Err(panic) => panic_to_problem(panic),
        };
        Ok(observation.finish(response))
    }
}
