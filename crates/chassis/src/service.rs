//! A domain service, declared once, and the one way every topology starts it.
//!
//! A domain service implements [`Service`]: its name, default port, the
//! public routes it owns, its migrations, the events it publishes and
//! consumes, its own flags, and how to build the state its handlers share.
//! [`run`] does the rest the same way for every service and topology:
//! database and migrations, outbox and feed, consumers, token checks,
//! readiness, registration and a clean stop. `dure run <service>`, the
//! one-service binaries (`process::service_main`) and both topologies of
//! `dure up` call it; only where the service listens differs
//! ([`Listen`]: a port, or by name inside this process).

use crate::auth::{AuthArgs, Revocations, TokenVerifier};
use crate::config::{ConfigError, ConfigFile, DatabaseUrl};
use crate::db::{Db, Migrations};
use crate::discovery::{Directory, DiscoveryArgs, DiscoverySettings};
use crate::events::{Bus, BusArgs, Consumer, Handler, Outbox};
use crate::http::ServiceApp;
pub use crate::serving::{Listen, ServiceArgs, ServiceSettings};
use anyhow::Context as _;
use dure_contracts::registry::Descriptor;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A domain service, described once.
pub trait Service: Clone + Send + Sync + Sized + 'static {
    /// In the registry, logs, metrics and database names.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Listens on this port of 127.0.0.1 unless told otherwise.
    const PORT: u16;
    /// Public path prefixes it owns: the gateway routes them here.
    const ROUTES: &'static [&'static str];
    /// Event types it appends to its outbox; a service with none has no
    /// outbox and serves no feed.
    const PUBLISHES: &'static [&'static str];

    /// Its own flags, beyond every service's ([`Args`]); [`NoArgs`] for none.
    type Args: clap::Args + Clone + Debug + Default + Send + Sync + 'static;
    /// Its own settings, resolved from [`Self::Args`] and the config file.
    type Settings: Clone + Debug + Send + Sync + 'static;

    fn migrations() -> &'static Migrations;

    fn settings(args: &Self::Args, file: &ConfigFile) -> Result<Self::Settings, ConfigError>;

    /// The state its handlers share, built on what the chassis connected.
    fn start(
        base: Base,
        settings: Self::Settings,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Its public API and that API's OpenAPI document.
    fn api(&self) -> (axum::Router, utoipa::openapi::OpenApi);

    /// The producers it follows and what handles their events.
    fn consumes(&self) -> Vec<Subscription> {
        Vec::new()
    }

    /// How it checks tokens: identity's published keys (minus the users
    /// deleted since) unless it has its own.
    fn verifier(&self) -> Option<TokenVerifier> {
        None
    }
}

/// Events of one producer, and what handles them.
pub struct Subscription {
    pub producer: &'static str,
    pub handler: Arc<dyn Handler>,
}

/// For a service without flags of its own.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct NoArgs {}

/// What the chassis has connected before a service builds its state.
#[derive(Debug, Clone)]
pub struct Base {
    pub db: Db,
    /// Present when the service publishes events.
    pub outbox: Option<Outbox>,
    /// Users deleted since their tokens were issued.
    pub revocations: Revocations,
    pub directory: Directory,
}

impl Base {
    /// The outbox of a service that declares the events it publishes.
    pub fn outbox(&self) -> anyhow::Result<Outbox> {
        self.outbox
            .clone()
            .context("a service that appends events must declare them in Service::PUBLISHES")
    }
}

/// The flags (and env vars) of a domain service: every service's, then its
/// own.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Args<Own: clap::Args> {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub own: Own,
}

/// [`Args`] after layering and validation.
#[derive(Debug, Clone)]
pub struct Config<Own> {
    pub service: ServiceSettings,
    pub database_url: DatabaseUrl,
    pub discovery: DiscoverySettings,
    /// How events travel: the HTTP feed, or NATS JetStream.
    pub bus: Bus,
    /// How long the outbox keeps delivered events; `None`: forever.
    pub event_retention: Option<std::time::Duration>,
    /// identity's JWKS; found through discovery when `None`.
    pub jwks_url: Option<String>,
    pub own: Own,
}

impl<Own: clap::Args> Args<Own> {
    /// Layers these args over `file` for service `S`.
    pub fn resolve<S: Service<Args = Own>>(
        &self,
        file: &ConfigFile,
    ) -> Result<Config<S::Settings>, ConfigError> {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], S::PORT));
        Ok(Config {
            service: self.service.resolve(file, default_listen)?,
            database_url: self.storage.resolve(file, S::NAME)?,
            discovery: self.discovery.resolve(file)?,
            bus: self.bus.resolve(file)?,
            event_retention: self.bus.retention(file)?,
            jwks_url: self.auth.resolve(file)?,
            own: S::settings(&self.own, file)?,
        })
    }
}

impl<Own> Config<Own> {
    /// Defaults on the given database, checking tokens against `jwks_url`:
    /// for tests and embedding.
    pub fn new(database_url: DatabaseUrl, jwks_url: Option<String>, own: Own) -> Self {
        Self {
            service: ServiceSettings::local(),
            database_url,
            discovery: DiscoverySettings::default(),
            bus: Bus::Feed,
            event_retention: None,
            jwks_url,
            own,
        }
    }
}

/// What service `S` tells the registry and the gateway about itself.
pub fn descriptor<S: Service>() -> Descriptor {
    Descriptor {
        name: S::NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: S::ROUTES.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// Runs service `S` until `shutdown` resolves: connects and migrates its
/// database, starts its outbox (with its feed) and its consumers, checks
/// tokens, serves its API on `listen` while registered, and stops cleanly.
pub async fn run<S: Service>(
    config: Config<S::Settings>,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url, S::migrations()).await?;
    crate::events::install(&db).await?;
    let nats = config.bus.connect().await?;
    let outbox = (!S::PUBLISHES.is_empty())
        .then(|| Outbox::start(S::NAME, db.clone(), nats.clone(), config.event_retention));
    let revocations = Revocations::load(&db).await?;
    let directory = Directory::start(&config.discovery);
    let base = Base {
        db: db.clone(),
        outbox: outbox.clone(),
        revocations: revocations.clone(),
        directory: directory.clone(),
    };
    let service = S::start(base, config.own.clone())
        .await
        .with_context(|| format!("starting {}", S::NAME))?;

    let verifier = service.verifier().unwrap_or_else(|| {
        crate::auth::verifier(config.jwks_url.as_deref(), &directory).with_revocations(revocations)
    });
    let (api, openapi) = service.api();
    let mut api = api.layer(axum::extract::Extension(Arc::new(verifier)));
    if let Some(outbox) = &outbox {
        api = api.merge(outbox.router());
    }
    let consumers: Vec<_> = service
        .consumes()
        .into_iter()
        .map(|subscription| {
            tokio::spawn(
                Consumer {
                    name: S::NAME.into(),
                    producer: subscription.producer.into(),
                    db: db.clone(),
                    directory: directory.clone(),
                    handler: subscription.handler,
                    max_attempts: crate::events::DEFAULT_MAX_ATTEMPTS,
                    nats: nats.clone(),
                }
                .run(),
            )
        })
        .collect();
    let app = ServiceApp::new(api)
        .openapi(openapi)
        .trusted_proxies(config.service.trusted_proxies.clone())
        .readiness(db.readiness())
        .on_scrape(crate::db::record_pool_metrics);
    tracing::info!(address = %listen, database = %config.database_url, "{} ready", S::NAME);
    let feed = outbox.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(outbox) = feed {
            outbox.stop();
        }
    };
    let served = crate::serving::serve(
        descriptor::<S>(),
        &config.service,
        &config.discovery,
        app,
        listen,
        shutdown,
    )
    .await;
    for consumer in consumers {
        consumer.abort();
    }
    db.close().await;
    served.with_context(|| format!("serving {}", S::NAME))?;
    tracing::info!("{} stopped", S::NAME);
    Ok(())
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
