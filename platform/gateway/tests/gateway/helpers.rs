//! A registry, upstream services and a gateway on random ports.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use dure_chassis::discovery::{DiscoverySettings, Source};
use dure_chassis::http::ServiceApp;
use dure_chassis::serving::{Listen, ServiceSettings};
use dure_contracts::registry::{Catalog, Descriptor};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// A process-like part: its own runtime on its own thread, so that killing
/// it ends every task it has (connections, heartbeats) as a crash would.
pub struct Part {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Part {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Graceful: the part shuts down as on SIGTERM.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }

    /// Abrupt: every task of the part ends at once, no goodbye.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = std::thread::spawn(move || done.blocking_recv()).join();
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn spawn<F>(
    address: SocketAddr,
    run: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F + Send + 'static,
) -> Part
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    dure_chassis::telemetry::init_test_logging();
    let (stop, stopped) = oneshot::channel();
    let (kill, killed) = oneshot::channel::<()>();
    let (done_tx, done) = oneshot::channel();
    let (bound_tx, bound) = oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::bind(address).await.unwrap();
            let _ = bound_tx.send(listener.local_addr().unwrap());
            let task = tokio::spawn(run(listener, stopped));
            tokio::select! {
                _ = task => {}
                _ = killed => {}
            }
        });
        runtime.shutdown_background();
        let _ = done_tx.send(());
    });
    Part {
        address: bound.await.unwrap(),
        stop: Some(stop),
        kill: Some(kill),
        done: Some(done),
    }
}

pub async fn start_registry_at(address: SocketAddr) -> Part {
    spawn(address, |listener, stopped| {
        dure_registry::run(
            dure_registry::Config::new(HEARTBEAT),
            Listen::tcp(listener),
            async {
                let _ = stopped.await;
            },
        )
    })
    .await
}

pub async fn start_registry() -> Part {
    start_registry_at("127.0.0.1:0".parse().unwrap()).await
}

pub fn registry_discovery(registry: &str) -> DiscoverySettings {
    DiscoverySettings {
        source: Source::Registry(registry.to_owned()),
        advertise_url: None,
        heartbeat_interval: HEARTBEAT,
    }
}

/// An upstream service instance: `/api/echo` (any method) answers with its
/// name, the request's headers and the address the connection came from,
/// and with `?close` closes the connection after answering; `/api/slow`
/// takes two seconds;
/// `/api/events` streams two server-sent events 500 ms apart.
pub struct Upstream {
    pub part: Part,
    pub hits: Arc<AtomicUsize>,
}

pub async fn start_upstream(registry: &str, instance: &str) -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let name = instance.to_owned();
    let counter = hits.clone();
    let echo = move |method: axum::http::Method,
                     ConnectInfo(peer): ConnectInfo<SocketAddr>,
                     uri: axum::http::Uri,
                     headers: HeaderMap,
                     body: String| {
        let name = name.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
                .collect();
            let answer = axum::Json(json!({
                "instance": name,
                "method": method.as_str(),
                "headers": headers,
                "body_len": body.len(),
                "peer": peer.to_string(),
            }));
            let close = uri.query().is_some_and(|q| q.contains("close"));
            let connection = if close { "close" } else { "keep-alive" };
            ([(axum::http::header::CONNECTION, connection)], answer)
        }
    };
    let router = Router::new()
        .route("/api/echo", axum::routing::any(echo))
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        )
        .route("/api/events", get(events))
        .route(
            "/api/postings",
            get(|| async { axum::Json(json!({"items": [{"id": "p1"}], "next_cursor": null})) }),
        )
        .route(
            "/api/notice",
            get(|| async { axum::Json(json!({"items": [{"id": "n1"}], "next_cursor": null})) }),
        )
        .route("/internal/secret", get(|| async { "internal" }));
    let discovery = registry_discovery(registry);
    let upstream = spawn(
        "127.0.0.1:0".parse().unwrap(),
        move |listener, stopped| async move {
            let descriptor = Descriptor {
                name: "echo".into(),
                version: "test".into(),
                routes: [
                    "/api/echo",
                    "/api/slow",
                    "/api/events",
                    "/api/postings",
                    "/api/notice",
                ]
                .map(str::to_owned)
                .to_vec(),
            };
            dure_chassis::serving::serve(
                descriptor,
                &ServiceSettings::local(),
                &discovery,
                ServiceApp::new(router),
                Listen::tcp(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
        },
    )
    .await;
    Upstream {
        part: upstream,
        hits,
    }
}

async fn events() -> Response {
    let stream = futures_util::stream::unfold(0, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>("data: first\n\n".to_owned()), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok("data: second\n\n".to_owned()), 2))
            }
            _ => None,
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

pub async fn start_gateway(config: dure_gateway::Config) -> Part {
    spawn(config.service.listen, move |listener, stopped| {
        dure_gateway::run(config, listener, async {
            let _ = stopped.await;
        })
    })
    .await
}

/// Waits until the registry lists `count` instances of `service`.
pub async fn wait_for_instances(registry: &str, service: &str, count: usize) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{registry}/v1/services")).send().await
            && let Ok(catalog) = response.json::<Catalog>().await
            && catalog.instances(service).len() == count
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the registry never listed {count} instance(s) of {service}");
}

/// Waits until the gateway routes `path` to an instance (200).
pub async fn wait_routable(gateway: &str, path: &str) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{gateway}{path}")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never routed {path}");
}
