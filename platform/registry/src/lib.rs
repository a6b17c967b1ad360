//! The registry: where instances announce themselves and clients find them.
//!
//! An instance registers with its address, version and metadata (among them
//! the public path prefixes it serves) and gets a lease. It renews the lease
//! with a heartbeat every few seconds; after three missed heartbeats the
//! lease expires and the instance disappears from every list. An expired
//! instance's next heartbeat gets 404 and it registers again, so after a
//! registry restart (state is in memory) the full picture is back within one
//! heartbeat interval. Clients long-poll for changes with an index.
//!
//! # Layout
//! - [`leases`]: the state and its rules, free of HTTP and of wall time.
//! - [`api`]: the internal HTTP API (docs/api.md, "Internal API").
//! - [`dashboard`]: `GET /`, a page for people.

#![forbid(unsafe_code)]

pub mod api;
pub mod dashboard;
pub mod leases;

use anyhow::Context;
use axum::Router;
use dure_chassis::config::{ConfigError, ConfigFile, parse_duration};
use dure_chassis::http::ServiceApp;
use dure_chassis::serving::{Listen, ServiceArgs, ServiceSettings};
use leases::Leases;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const NAME: &str = "registry";
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8761);

/// `dure run registry` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// How often instances are asked to heartbeat; a lease lasts three of these [default: 5s]
    #[arg(long, env = "DURE_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceSettings,
    pub heartbeat_interval: Duration,
}

impl Args {
    pub fn resolve(&self, file: &ConfigFile) -> Result<Config, ConfigError> {
        let heartbeat_interval = file.layer(
            "heartbeat_interval",
            self.heartbeat_interval,
            Duration::from_secs(5),
        )?;
        if heartbeat_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "heartbeat_interval".into(),
                origin: "configuration".into(),
                expected: "at least 100ms".into(),
                value: format!("{heartbeat_interval:?}"),
            });
        }
        Ok(Config {
            service: self.service.resolve(file, DEFAULT_LISTEN)?,
            heartbeat_interval,
        })
    }
}

impl Config {
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self {
            service: ServiceSettings::local(),
            heartbeat_interval,
        }
    }
}

/// The registry's shared state.
#[derive(Clone, Debug)]
pub struct Registry {
    leases: Arc<Mutex<Leases>>,
    /// The latest index, for long polls to wait on.
    changes: watch::Sender<u64>,
    /// Set when the registry shuts down: long polls answer at once.
    closing: watch::Sender<bool>,
}

impl Registry {
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self {
            leases: Arc::new(Mutex::new(Leases::new(heartbeat_interval * 3))),
            changes: watch::channel(0).0,
            closing: watch::channel(false).0,
        }
    }

    fn announce(&self, index: u64) {
        self.changes.send_replace(index);
    }

    /// Reads with `read` at once if `index` is `None` or older than what it
    /// returns; otherwise waits for a change past `index`, or for `wait`.
    async fn wait_for<T>(
        &self,
        index: Option<u64>,
        wait: Duration,
        read: impl Fn(&Leases) -> (T, u64),
    ) -> (T, u64) {
        let deadline = Instant::now() + wait;
        let mut changes = self.changes.subscribe();
        let mut closing = self.closing.subscribe();
        loop {
            changes.borrow_and_update();
            let (value, current) = read(&*self.leases.lock().await);
            let fresh = index.is_none_or(|seen| current > seen);
            if fresh || Instant::now() >= deadline || *closing.borrow() {
                return (value, current);
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return (value, current);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
                _ = closing.changed() => {}
            }
        }
    }

    /// Drops expired leases every so often, until `stop` resolves.
    pub async fn reap(self, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let mut leases = self.leases.lock().await;
            let expired = leases.expire(Instant::now());
            if !expired.is_empty() {
                for id in &expired {
                    tracing::warn!(instance_id = %id, "lease expired: no heartbeat");
                }
                self.announce(leases.index());
            }
        }
    }

    pub fn app(&self, config: &Config) -> Router {
        let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(api::register))
            .routes(routes!(api::heartbeat))
            .routes(routes!(api::deregister))
            .routes(routes!(api::catalog))
            .routes(routes!(api::service))
            .routes(routes!(api::prometheus_targets))
            .route("/", axum::routing::get(dashboard::page))
            .with_state(self.clone())
            .split_for_parts();
        ServiceApp::new(api)
            .openapi(openapi)
            .trusted_proxies(config.service.trusted_proxies.clone())
            .into_router()
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "dure registry",
    description = "Internal: instance leases and discovery."
))]
struct ApiDoc;

/// Runs the registry on `listen` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = Registry::new(config.heartbeat_interval);
    let reap_every = (config.heartbeat_interval / 5).max(Duration::from_millis(50));
    let reaper = tokio::spawn(registry.clone().reap(reap_every));
    tracing::info!(address = %listen, lease_ttl_secs = (config.heartbeat_interval * 3).as_secs_f64(), "registry ready");
    // On the way down, stop expiring leases (heartbeats can no longer
    // arrive, and no watcher may be told that every instance died) and
    // answer pending long polls at once.
    let closing = registry.closing.clone();
    let stopping = async move {
        shutdown.await;
        reaper.abort();
        closing.send_replace(true);
    };
    listen
        .serve(
            registry.app(&config),
            stopping,
            config.service.shutdown_grace,
        )
        .await
        .context("serving HTTP")?;
    tracing::info!("registry stopped");
    Ok(())
}
