//! The gateway: the one entry point of the public API.
//!
//! Each request is matched against the routes services announce in
//! discovery, checked (rate limit per client address, and the bearer token if
//! one is present: a bad token is refused here before any service sees it),
//! and forwarded to one instance of the owning service, picked by power of
//! two choices on requests in flight. The gateway links no service's code.
//!
//! # Layout
//! - [`edge`]: serving connections; proxied requests skip the router.
//! - [`upstreams`]: route table and instances, rebuilt on catalog changes;
//!   the load-balancing pick.
//! - [`proxy`]: forwarding one request (headers, streaming, timeout, retry).
//! - [`pool`]: each worker's keep-alive connections to the instances.
//! - [`rate_limit`]: token buckets in memory or in Redis.
//! - [`openapi`]: the merged OpenAPI document.
//! - [`home`]: `GET /api/home`, composed from three services, degrading
//!   part by part.
//! - [`site`]: the gateway's own errors for a page request, as HTML.
//!
//! Each upstream service is called through its own circuit breaker and
//! bulkhead; instances that keep failing are ejected for a while; retries
//! draw on a retry budget (see `dure_chassis::resilience`).

#![forbid(unsafe_code)]

pub mod edge;
pub mod home;
pub mod openapi;
pub mod pool;
pub mod proxy;
pub mod rate_limit;
pub mod site;
pub mod upstreams;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dure_chassis::ApiError;
use dure_chassis::auth::TokenVerifier;
use dure_chassis::config::{ConfigError, ConfigFile, parse_duration};
use dure_chassis::discovery::{Directory, DiscoveryArgs, DiscoverySettings};
use dure_chassis::http::{IpNet, RouteLabel, ServiceApp, TrustedProxies};
use dure_chassis::resilience::{Breaker, BreakerSettings, Bulkhead, Outcome, RetryBudget};
use dure_chassis::serving::{ServiceArgs, ServiceSettings};
use dure_contracts::registry::Descriptor;
use rate_limit::{Limit, RateLimiter};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use upstreams::Upstreams;

pub const NAME: &str = "gateway";
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// The service whose JWKS verifies tokens at the edge.
const IDENTITY: &str = "identity";

/// `dure run gateway` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// How long to wait for an upstream's response head [default: 15s]
    #[arg(long, env = "DURE_UPSTREAM_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub upstream_timeout: Option<Duration>,
    /// Per-service timeouts overriding it, e.g. posting=5s,identity=3s
    #[arg(long, env = "DURE_UPSTREAM_TIMEOUTS", value_name = "LIST")]
    pub upstream_timeouts: Option<String>,
    /// How long to wait for a connection to an upstream [default: 1s]
    #[arg(long, env = "DURE_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Largest request body passed on, in bytes [default: 1048576]
    #[arg(long, env = "DURE_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Requests per second per client address; 0 turns rate limiting off [default: 1000]
    #[arg(long, env = "DURE_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Requests a client may burst above the rate [default: 2000]
    #[arg(long, env = "DURE_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Threads serving requests, each with its own connections [default: one per core]
    #[arg(long, env = "DURE_GATEWAY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// How long a tripped circuit breaker refuses calls before trying again [default: 5s]
    #[arg(long, env = "DURE_BREAKER_OPEN_FOR", value_name = "DURATION", value_parser = parse_duration)]
    pub breaker_open_for: Option<Duration>,
    /// A call slower than this counts as slow for the circuit breaker [default: 2s]
    #[arg(long, env = "DURE_BREAKER_SLOW_CALL", value_name = "DURATION", value_parser = parse_duration)]
    pub breaker_slow_call: Option<Duration>,
    /// Requests in flight to one upstream service before more are refused (bulkhead) [default: 256]
    #[arg(long, env = "DURE_MAX_CONCURRENT_PER_SERVICE", value_name = "N")]
    pub max_concurrent_per_service: Option<usize>,
    /// Keep rate limits in this Redis, shared by every gateway replica
    #[arg(
        long,
        env = "DURE_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceSettings,
    pub discovery: DiscoverySettings,
    pub upstream_timeout: Duration,
    pub upstream_timeouts: HashMap<String, Duration>,
    pub connect_timeout: Duration,
    pub body_limit: usize,
    /// `None`: rate limiting off.
    pub rate_limit: Option<Limit>,
    pub redis_url: Option<String>,
    pub workers: usize,
    /// The circuit breaker of each upstream service.
    pub breaker: BreakerSettings,
    /// Requests in flight to one upstream service before more are refused.
    pub max_concurrent_per_service: usize,
}

fn invalid(key: &str, expected: &str, value: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        origin: "configuration".into(),
        expected: expected.into(),
        value: value.into(),
    }
}

impl Args {
    pub fn resolve(&self, file: &ConfigFile) -> Result<Config, ConfigError> {
        let mut service = self.service.resolve(file, DEFAULT_LISTEN)?;
        // The gateway is the edge: unless told otherwise it believes no
        // client's X-Forwarded-For.
        let trusted: Option<Vec<IpNet>> =
            file.layer_opt("trusted_proxies", self.service.trusted_proxies.clone())?;
        service.trusted_proxies = TrustedProxies(trusted.unwrap_or_default());

        let mut upstream_timeouts = HashMap::new();
        if let Some(list) =
            file.layer_opt::<String>("upstream_timeouts", self.upstream_timeouts.clone())?
        {
            for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, timeout) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid("upstream_timeouts", "service=duration pairs", pair))?;
                let timeout =
                    parse_duration(timeout).map_err(|e| invalid("upstream_timeouts", &e, pair))?;
                upstream_timeouts.insert(name.trim().to_owned(), timeout);
            }
        }
        let per_second: u32 = file.layer("rate_limit", self.rate_limit, 1000)?;
        let burst: u32 = file.layer("rate_limit_burst", self.rate_limit_burst, 2000)?;
        let body_limit = file.layer("body_limit", self.body_limit, 1024 * 1024)?;
        if body_limit == 0 {
            return Err(invalid("body_limit", "a number of bytes above 0", "0"));
        }
        Ok(Config {
            service,
            discovery: self.discovery.resolve(file)?,
            upstream_timeout: file.layer(
                "upstream_timeout",
                self.upstream_timeout,
                Duration::from_secs(15),
            )?,
            upstream_timeouts,
            connect_timeout: file.layer(
                "connect_timeout",
                self.connect_timeout,
                Duration::from_secs(1),
            )?,
            body_limit,
            rate_limit: (per_second > 0).then(|| Limit {
                per_second: f64::from(per_second),
                burst: f64::from(burst.max(1)),
            }),
            redis_url: file.layer_opt("redis_url", self.redis_url.clone())?,
            workers: file.layer("workers", self.workers, cores())?.clamp(1, 256),
            breaker: BreakerSettings {
                open_for: file.layer(
                    "breaker_open_for",
                    self.breaker_open_for,
                    BreakerSettings::default().open_for,
                )?,
                slow_call: file.layer(
                    "breaker_slow_call",
                    self.breaker_slow_call,
                    BreakerSettings::default().slow_call,
                )?,
                ..BreakerSettings::default()
            },
            max_concurrent_per_service: file.layer(
                "max_concurrent_per_service",
                self.max_concurrent_per_service,
                256,
            )?,
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Config {
    /// Defaults with the given discovery: for tests and embedding.
    pub fn new(discovery: DiscoverySettings) -> Self {
        Self {
            service: ServiceSettings {
                trusted_proxies: TrustedProxies::default(),
                ..ServiceSettings::local()
            },
            discovery,
            upstream_timeout: Duration::from_secs(15),
            upstream_timeouts: HashMap::new(),
            connect_timeout: Duration::from_secs(1),
            body_limit: 1024 * 1024,
            rate_limit: Some(Limit {
                per_second: 1000.0,
                burst: 2000.0,
            }),
            redis_url: None,
            workers: 1,
            breaker: BreakerSettings::default(),
            max_concurrent_per_service: 256,
        }
    }

    pub fn timeout_for(&self, service: &str) -> Duration {
        self.upstream_timeouts
            .get(service)
            .copied()
            .unwrap_or(self.upstream_timeout)
    }

    /// Whether `peer` is a proxy in front of the gateway.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            self.service
                .trusted_proxies
                .0
                .iter()
                .any(|net| net.contains(ip))
        })
    }
}

/// Why a request did not get an upstream's answer.
#[derive(Debug)]
pub enum GatewayError {
    NoRoute,
    NoInstance,
    PayloadTooLarge,
    Timeout,
    Unreachable(String),
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::NoRoute => ApiError::NotFound("no such route".into()),
            GatewayError::NoInstance => {
                ApiError::Unavailable("no instance of this service is available".into())
            }
            GatewayError::PayloadTooLarge => ApiError::PayloadTooLarge,
            GatewayError::Timeout => {
                ApiError::GatewayTimeout("the service did not answer in time".into())
            }
            GatewayError::Unreachable(cause) => {
                tracing::warn!(%cause, "upstream unreachable");
                ApiError::BadGateway("the service could not be reached".into())
            }
        }
    }
}

/// What the gateway's handlers share: the state of the whole gateway behind
/// one `Arc`, and the upstream connection pool of the worker thread that
/// handles the request (connections stay on the runtime that opened them).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    /// Ready once discovery delivered its first catalog.
    catalog_loaded: dure_chassis::http::Readiness,
    pool: pool::Pool,
}

pub struct Shared {
    config: Config,
    /// Breaker and bulkhead of each upstream service, kept across catalog
    /// changes.
    guards: std::sync::Mutex<HashMap<String, Arc<ServiceGuard>>>,
    retry_budget: RetryBudget,
    http: dure_chassis::client::Client,
    upstreams: RwLock<Arc<Upstreams>>,
    verifier: TokenVerifier,
    limiter: RateLimiter,
    openapi_cache: tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>,
    /// Whether the routing table has been built from a loaded catalog: the
    /// gateway is ready only then, or it would answer 404 for routes that
    /// the registry already knows.
    routed: Arc<std::sync::atomic::AtomicBool>,
    /// The task rebuilding the route table, stopped with the gateway.
    following: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::ops::Deref for Gateway {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Connects what the gateway needs and starts following the catalog.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        // Endpoints keep their metric handles: the recorder must exist
        // before the first route table is built.
        dure_chassis::telemetry::prometheus();
        let directory = Directory::start(&config.discovery);
        let limiter = match (&config.rate_limit, &config.redis_url) {
            (None, _) => RateLimiter::Off,
            (Some(limit), Some(url)) => {
                RateLimiter::redis(*limit, url).await.with_context(|| {
                    format!(
                        "cannot connect to Redis at {}",
                        dure_chassis::config::redact_url(url)
                    )
                })?
            }
            (Some(limit), None) => RateLimiter::memory(*limit),
        };
        let routed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gateway = Self {
            catalog_loaded: routed_readiness(routed.clone()),
            pool: pool::Pool::new(config.connect_timeout),
            shared: Arc::new(Shared {
                guards: std::sync::Mutex::new(HashMap::new()),
                retry_budget: RetryBudget::default(),
                verifier: TokenVerifier::from_discovery(directory.clone(), IDENTITY),
                config,
                http: dure_chassis::client::Client::default(),
                upstreams: RwLock::new(Arc::new(Upstreams::default())),
                limiter,
                openapi_cache: tokio::sync::Mutex::new(None),
                following: std::sync::Mutex::new(None),
                routed,
            }),
        };
        gateway.rebuild(&directory);
        let following = tokio::spawn(gateway.clone().follow(directory));
        *gateway
            .following
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(following);
        Ok(gateway)
    }

    /// The same gateway with a connection pool of its own, for another
    /// worker thread.
    pub fn for_worker(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            catalog_loaded: self.catalog_loaded.clone(),
            pool: pool::Pool::new(self.config.connect_timeout),
        }
    }

    fn rebuild(&self, directory: &Directory) {
        // Read before the catalog: a table built from it is then at least
        // as new as the catalog that made the directory loaded.
        let loaded = directory.is_loaded();
        let catalog = directory.catalog();
        if let Ok(mut current) = self.upstreams.write() {
            *current = Arc::new(Upstreams::build(&catalog, current.as_ref()));
        }
        if loaded {
            self.routed
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    async fn follow(self, mut directory: Directory) {
        while directory.changed().await {
            self.rebuild(&directory);
            tracing::debug!("route table rebuilt");
        }
    }

    /// The breaker and bulkhead of `service`, made on first use.
    fn guard(&self, service: &str) -> Arc<ServiceGuard> {
        let mut guards = self
            .guards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guards
            .entry(service.to_owned())
            .or_insert_with(|| {
                Arc::new(ServiceGuard {
                    breaker: Breaker::new(service, self.config.breaker),
                    bulkhead: Bulkhead::new(service, self.config.max_concurrent_per_service),
                })
            })
            .clone()
    }

    pub(crate) fn upstreams(&self) -> Arc<Upstreams> {
        self.shared
            .upstreams
            .read()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// The gateway's own routes, before discovery wiring; [`edge`] sends
    /// every other request to the proxy.
    pub fn service_app(&self) -> ServiceApp {
        let api = Router::new()
            .route("/api/openapi.json", get(merged_openapi))
            .route("/api/home", get(home::home))
            .with_state(self.clone());
        ServiceApp::new(api)
            .body_limit(self.config.body_limit)
            .trusted_proxies(self.config.service.trusted_proxies.clone())
            .readiness(self.catalog_loaded.clone())
    }
}

fn routed_readiness(routed: Arc<std::sync::atomic::AtomicBool>) -> dure_chassis::http::Readiness {
    Arc::new(move || {
        let routed = routed.load(std::sync::atomic::Ordering::Acquire);
        Box::pin(async move {
            if routed {
                Ok(())
            } else {
                Err("no routing table from the registry yet".to_owned())
            }
        })
    })
}

async fn merged_openapi(State(gateway): State<Gateway>) -> Response {
    axum::Json(openapi::merged(&gateway).await).into_response()
}

/// Every request that is not the gateway's own: limit, route, check,
/// forward. `client` is who asked (behind trusted proxies), `peer` the
/// connection's other end.
async fn handle(
    gateway: &Gateway,
    upstreams: Arc<Upstreams>,
    client: IpAddr,
    peer: &proxy::ClientIp,
    request: Request,
) -> Result<Response, ApiError> {
    handle_within(gateway, upstreams, Some(client), Some(peer), request, None).await
}

/// Like [`handle`], with a tighter deadline than the route's own timeout
/// (for the parts of a composed page).
pub(crate) async fn handle_within(
    gateway: &Gateway,
    upstreams: Arc<Upstreams>,
    client: Option<IpAddr>,
    peer: Option<&proxy::ClientIp>,
    request: Request,
    deadline: Option<Duration>,
) -> Result<Response, ApiError> {
    if let Some(client) = client
        && let Err(wait) = gateway.limiter.check(client).await
    {
        metrics::counter!("gateway_rate_limited_total").increment(1);
        return Err(ApiError::TooManyRequests {
            detail: "too many requests from this address".into(),
            retry_after: wait,
        });
    }
    let (prefix, service) = upstreams
        .matching(request.uri().path())
        .ok_or(GatewayError::NoRoute)?;
    let (route, service) = (RouteLabel(prefix.to_owned()), service.to_owned());

    let (parts, body) = request.into_parts();
    if let Some(token) = dure_chassis::auth::bearer_token(&parts)? {
        gateway.verifier.verify(token).await?;
    }
    let request = Request::from_parts(parts, body);
    let endpoints = upstreams.endpoints(&service);
    if endpoints.is_empty() {
        return Err(GatewayError::NoInstance.into());
    }
    let mut response = guarded(gateway, &service, || {
        proxy::forward(gateway, &service, endpoints, peer, request, deadline)
    })
    .await?;
    // Counted by route prefix in the gateway's own request metrics.
    response.extensions_mut().insert(route);
    Ok(response)
}

/// Runs one call to `service` inside its bulkhead and breaker and records
/// how it went: refused at once when either is closed to it.
async fn guarded<F, Fut>(gateway: &Gateway, service: &str, call: F) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response, GatewayError>>,
{
    let guard = gateway.guard(service);
    let Some(_slot) = guard.bulkhead.try_enter() else {
        return Err(ApiError::Unavailable(format!(
            "too many requests to {service} are in flight"
        )));
    };
    guard
        .breaker
        .try_acquire()
        .map_err(|open| ApiError::CircuitOpen {
            detail: format!("{service} is failing; not calling it for now"),
            retry_after: open.retry_after,
        })?;
    gateway.retry_budget.deposit();
    let started = Instant::now();
    let result = call().await;
    let outcome = match &result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) if started.elapsed() >= guard.breaker.settings().slow_call => Outcome::Slow,
        Ok(_) => Outcome::Success,
        Err(GatewayError::PayloadTooLarge | GatewayError::NoRoute) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    guard.breaker.record(outcome);
    Ok(result?)
}

/// What protects the gateway from one upstream service.
struct ServiceGuard {
    breaker: Breaker,
    bulkhead: Bulkhead,
}

pub fn descriptor() -> Descriptor {
    Descriptor {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: Vec::new(),
    }
}

/// Runs the gateway on `listener` until `shutdown` resolves.
///
/// Like nginx's worker processes, `workers - 1` extra threads each run a
/// single-threaded runtime that accepts from the same listening socket and
/// keeps its connections, upstream pool included, to itself: no request
/// crosses threads. The calling runtime is one more worker and also runs
/// registration and discovery.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("listener address")?;
    let gateway = Gateway::start(config.clone()).await?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let listener = listener.into_std().context("listener")?;
    let mut workers = Vec::new();
    for worker in 1..config.workers.max(1) {
        let listener = listener.try_clone().context("sharing the listener")?;
        let gateway = gateway.for_worker();
        let mut stopping = stopping.clone();
        let grace = config.service.shutdown_grace;
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{worker}"))
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let stopped = async move {
                        let _ = stopping.wait_for(|stopping| *stopping).await;
                    };
                    let router = gateway.service_app().into_router();
                    edge::serve(listener, gateway, router, stopped, grace).await?;
                    Ok(())
                })
            })
            .context("starting a worker thread")?;
        workers.push(thread);
    }
    tracing::info!(%address, workers = config.workers, "gateway ready");
    let listener = TcpListener::from_std(listener).context("listener")?;
    let stop_workers = async move {
        shutdown.await;
        stopping_tx.send_replace(true);
    };
    let grace = config.service.shutdown_grace;
    let own = gateway.clone();
    dure_chassis::serving::serve_with(
        descriptor(),
        &config.discovery,
        gateway.service_app(),
        listener,
        stop_workers,
        move |listener, router, stopped| edge::serve(listener, own, router, stopped, grace),
    )
    .await
    .context("serving HTTP")?;
    for worker in workers {
        let joined = tokio::task::spawn_blocking(move || worker.join()).await;
        if let Ok(Ok(Err(err))) = joined {
            tracing::warn!(error = %err, "a worker thread failed");
        }
    }
    if let Some(following) = gateway
        .following
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        following.abort();
    }
    tracing::info!("gateway stopped");
    Ok(())
}
