//! What every service process is configured with, and how it runs.
//!
//! Each service flattens [`ServiceArgs`] (and, if it keeps data,
//! [`StorageArgs`]; if it registers or finds others,
//! [`DiscoveryArgs`](crate::discovery::DiscoveryArgs)) into its own clap
//! arguments and resolves them against the config file. [`serve`] then runs
//! the service's app: it registers the instance once the app is ready,
//! reports registration in `/readyz`, and deregisters before draining on
//! shutdown, so the gateway stops routing to it first.

use crate::config::{ConfigError, ConfigFile, DatabaseUrl, parse_duration};
use crate::discovery::{DiscoverySettings, Registrar};
use crate::http::{self, IpNet, ServiceApp, TrustedProxies};
use crate::telemetry::LogFormat;
use dure_contracts::registry::Descriptor;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

/// Flags (and env vars) every dure process accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Address to listen on [default: the service's own port on 127.0.0.1]
    #[arg(long, env = "DURE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json [default: auto]
    #[arg(long, env = "DURE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// How long in-flight requests may take to finish after SIGTERM [default: 10s]
    #[arg(long, env = "DURE_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Proxies whose X-Forwarded-For is believed, comma-separated networks [default: 127.0.0.0/8,::1]
    #[arg(
        long,
        env = "DURE_TRUSTED_PROXIES",
        value_name = "NETS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<IpNet>>,
}

/// [`ServiceArgs`] after layering and validation.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub trusted_proxies: TrustedProxies,
}

impl ServiceArgs {
    /// Layers these args over `file` over the defaults of a service that
    /// listens on `default_listen`.
    pub fn resolve(
        &self,
        file: &ConfigFile,
        default_listen: SocketAddr,
    ) -> Result<ServiceSettings, ConfigError> {
        let trusted = file.layer(
            "trusted_proxies",
            self.trusted_proxies.clone(),
            TrustedProxies::loopback().0,
        )?;
        Ok(ServiceSettings {
            listen: file.layer("listen", self.listen, default_listen)?,
            log_format: file.layer("log_format", self.log_format, LogFormat::Auto)?,
            shutdown_grace: file.layer(
                "shutdown_grace",
                self.shutdown_grace,
                Duration::from_secs(10),
            )?,
            trusted_proxies: TrustedProxies(trusted),
        })
    }
}

impl ServiceSettings {
    /// Settings for tests and embedding: any port on loopback.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Auto,
            shutdown_grace: Duration::from_secs(5),
            trusted_proxies: TrustedProxies::loopback(),
        }
    }
}

/// Where a service keeps its data.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StorageArgs {
    /// The service's database: sqlite://FILE or postgres://… [default: a SQLite file in the data dir]
    #[arg(
        long,
        env = "DURE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
    /// Directory for local data such as SQLite files [default: .dure]
    #[arg(long, env = "DURE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl StorageArgs {
    /// The database of service `name`: as configured, or `<data_dir>/<name>.db`.
    pub fn resolve(&self, file: &ConfigFile, name: &str) -> Result<DatabaseUrl, ConfigError> {
        let data_dir: PathBuf = file
            .layer_opt::<String>(
                "data_dir",
                self.data_dir.as_ref().map(|d| d.display().to_string()),
            )?
            .map_or_else(|| PathBuf::from(".dure"), PathBuf::from);
        let default = DatabaseUrl::sqlite_file(&data_dir.join(format!("{name}.db")));
        file.layer("database_url", self.database_url.clone(), default)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, registered in
/// discovery under `descriptor` while it runs.
pub async fn serve(
    descriptor: Descriptor,
    settings: &ServiceSettings,
    discovery: &DiscoverySettings,
    app: ServiceApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = settings.shutdown_grace;
    serve_with(
        descriptor,
        discovery,
        app,
        listener,
        shutdown,
        move |listener, router, stopped| http::serve(listener, router, stopped, grace),
    )
    .await
}

/// Like [`serve`], with the caller's own server for the router (the
/// gateway's, which sends proxied requests past it). `server` gets the
/// listener, the router and a future that resolves once the process has
/// left discovery and should stop accepting.
pub async fn serve_with<S, Served>(
    descriptor: Descriptor,
    discovery: &DiscoverySettings,
    app: ServiceApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    server: S,
) -> anyhow::Result<()>
where
    S: FnOnce(TcpListener, axum::Router, futures_util::future::BoxFuture<'static, ()>) -> Served,
    Served: Future<Output = std::io::Result<()>>,
{
    let address = listener.local_addr()?;
    let registrar = Registrar::start(discovery, &descriptor, address, app.readiness_check());
    // Only services that own public routes need to describe them.
    let app = if descriptor.routes.is_empty() {
        app
    } else {
        app.descriptor(descriptor)
    };
    let app = app.registration(registrar.registered());
    let deregister_first = Box::pin(async move {
        shutdown.await;
        registrar.deregister().await;
    });
    server(listener, app.into_router(), deregister_first).await?;
    Ok(())
}

/// The flags of a domain service that keeps data, finds others, checks
/// tokens and takes part in the event bus (posting, notice, notification).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DomainArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub discovery: crate::discovery::DiscoveryArgs,
    #[command(flatten)]
    pub bus: crate::events::BusArgs,
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
}

/// [`DomainArgs`] after layering and validation.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub service: ServiceSettings,
    pub database_url: DatabaseUrl,
    pub discovery: DiscoverySettings,
    /// How events travel: the HTTP feed, or NATS JetStream.
    pub bus: crate::events::Bus,
    /// identity's JWKS; found through discovery when `None`.
    pub jwks_url: Option<String>,
}

impl DomainArgs {
    /// Layers these args over `file` for service `name`, which listens on
    /// `default_listen` unless told otherwise.
    pub fn resolve(
        &self,
        file: &ConfigFile,
        name: &str,
        default_listen: SocketAddr,
    ) -> Result<DomainConfig, ConfigError> {
        Ok(DomainConfig {
            service: self.service.resolve(file, default_listen)?,
            database_url: self.storage.resolve(file, name)?,
            discovery: self.discovery.resolve(file)?,
            bus: self.bus.resolve(file)?,
            jwks_url: self.auth.resolve(file)?,
        })
    }
}

impl DomainConfig {
    /// Defaults on the given database, checking tokens against `jwks_url`:
    /// for tests and embedding.
    pub fn new(database_url: DatabaseUrl, jwks_url: impl Into<String>) -> Self {
        Self {
            service: ServiceSettings::local(),
            database_url,
            discovery: DiscoverySettings::default(),
            bus: crate::events::Bus::Feed,
            jwks_url: Some(jwks_url.into()),
        }
    }
}

/// What a domain service hands over to be served: its API with its OpenAPI
/// document, its database, and the pieces of the event path it has.
pub struct DomainParts {
    pub api: axum::Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub db: crate::db::Db,
    /// Served as the service's feed when it publishes events.
    pub outbox: Option<crate::events::Outbox>,
    /// Deleted users whose tokens the service refuses.
    pub revocations: crate::auth::Revocations,
    /// Background tasks (event consumers) stopped on the way out.
    pub background: Vec<tokio::task::JoinHandle<()>>,
}

/// Serves a domain service until `shutdown`: token checks against identity's
/// keys (minus revoked users), its feed, readiness on its database,
/// registration, and a clean stop of its background tasks and database.
pub async fn serve_domain(
    descriptor: Descriptor,
    config: &DomainConfig,
    directory: &crate::discovery::Directory,
    parts: DomainParts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let verifier = crate::auth::verifier(config.jwks_url.as_deref(), directory)
        .with_revocations(parts.revocations);
    let mut api = parts
        .api
        .layer(axum::extract::Extension(std::sync::Arc::new(verifier)));
    if let Some(outbox) = &parts.outbox {
        api = api.merge(outbox.router());
    }
    let app = ServiceApp::new(api)
        .openapi(parts.openapi)
        .trusted_proxies(config.service.trusted_proxies.clone())
        .readiness(parts.db.readiness());
    let address = listener.local_addr()?;
    tracing::info!(%address, database = %config.database_url, "{} ready", descriptor.name);
    let name = descriptor.name.clone();
    let served = serve(
        descriptor,
        &config.service,
        &config.discovery,
        app,
        listener,
        shutdown,
    )
    .await;
    for task in parts.background {
        task.abort();
    }
    parts.db.close().await;
    served?;
    tracing::info!("{name} stopped");
    Ok(())
}
