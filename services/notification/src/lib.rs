//! notification: what happened that concerns you, listed and streamed live.
//!
//! notification owns its database: each user's notifications, the notices
//! everyone sees (one row per notice, read marks per user), and a replica of
//! users. It writes none of them from requests: they come from other
//! services' events (`comment.added`, `notice.published`, `user.*`), pulled
//! from each producer's feed. A user reads and marks only their own, and
//! `GET /api/notifications/stream` pushes new ones as Server-Sent Events.
//!
//! # Layout
//! - [`config`]: `Args` resolved into a validated `Config`.
//! - [`api`]: the HTTP handlers, including the live stream.
//! - [`events`]: what each consumed event changes.
//! - [`store`]: the tables and their queries.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod events;
pub mod store;

pub use config::{Args, Config};

use anyhow::Context;
use dure_chassis::auth::Revocations;
use dure_chassis::db::{Db, Migrations};
use dure_chassis::discovery::Directory;
use dure_chassis::events::{Consumer, Handler};
use dure_chassis::service::{DomainParts, serve_domain};
use dure_contracts::registry::Descriptor;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const NAME: &str = "notification";

/// The services whose feeds notification follows.
pub const PRODUCERS: &[&str] = &["identity", "posting", "notice"];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// What notification's handlers share.
#[derive(Clone, Debug)]
pub struct Notifications {
    db: Db,
    revocations: Revocations,
    /// Woken whenever an event was handled, for the live streams.
    news: Arc<Notify>,
    /// JetStream, when the bus is NATS.
    nats: Option<async_nats::jetstream::Context>,
}

impl Notifications {
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database_url, &MIGRATIONS).await?;
        dure_chassis::events::install(&db).await?;
        let revocations = Revocations::load(&db).await?;
        Ok(Self {
            nats: config.bus.connect().await?,
            db,
            revocations,
            news: Arc::new(Notify::new()),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// One consumer per producer, all with the same handler.
    pub fn consume(&self, directory: &Directory) -> Vec<tokio::task::JoinHandle<()>> {
        let handler: Arc<dyn Handler> = Arc::new(events::NotificationEvents {
            revocations: self.revocations.clone(),
            news: self.news.clone(),
        });
        PRODUCERS
            .iter()
            .map(|producer| {
                let consumer = Consumer {
                    name: NAME.into(),
                    producer: (*producer).into(),
                    db: self.db.clone(),
                    directory: directory.clone(),
                    handler: handler.clone(),
                    max_attempts: dure_chassis::events::DEFAULT_MAX_ATTEMPTS,
                    nats: self.nats.clone(),
                };
                tokio::spawn(consumer.run())
            })
            .collect()
    }
}

/// What notification tells the registry and the gateway about itself.
pub fn descriptor() -> Descriptor {
    Descriptor {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: vec!["/api/notifications".into()],
    }
}

/// Runs notification on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Notifications::start(&config).await?;
    let directory = Directory::start(&config.discovery);
    let (api, openapi) = api::router().with_state(service.clone()).split_for_parts();
    let parts = DomainParts {
        api,
        openapi,
        db: service.db.clone(),
        outbox: None,
        revocations: service.revocations.clone(),
        background: service.consume(&directory),
    };
    serve_domain(descriptor(), &config, &directory, parts, listener, shutdown)
        .await
        .context("serving notification")
}
