//! notice: announcements from the admins, read by everyone.
//!
//! notice owns its database of notices. Reading is open to all; publishing,
//! editing and deleting need the `admin` role in the caller's token. Lists
//! show pinned notices first, then the newest, keyset paginated on
//! `(pinned, created_at, id)`.
//!
//! # Layout
//! - [`config`]: `Args` resolved into a validated `Config`.
//! - [`api`]: the HTTP handlers.
//! - [`store`]: the table and its queries.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod store;

pub use config::{Args, Config};

use anyhow::Context;
use dure_chassis::auth::Revocations;
use dure_chassis::db::{Db, Migrations};
use dure_chassis::discovery::Directory;
use dure_chassis::events::{Consumer, Outbox, RevokeDeletedUsers};
use dure_chassis::service::{DomainParts, serve_domain};
use dure_contracts::registry::Descriptor;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub const NAME: &str = "notice";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// What notice's handlers share.
#[derive(Clone, Debug)]
pub struct Notices {
    db: Db,
    outbox: Outbox,
    revocations: Revocations,
    /// JetStream, when the bus is NATS.
    nats: Option<async_nats::jetstream::Context>,
}

impl Notices {
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database_url, &MIGRATIONS).await?;
        dure_chassis::events::install(&db).await?;
        let nats = config.bus.connect().await?;
        let outbox = Outbox::start(NAME, db.clone(), nats.clone());
        let revocations = Revocations::load(&db).await?;
        Ok(Self {
            db,
            outbox,
            revocations,
            nats,
        })
    }

    /// Follows identity's feed: a deleted user's tokens stop working here.
    pub fn consume(&self, directory: &Directory) -> tokio::task::JoinHandle<()> {
        let consumer = Consumer {
            name: NAME.into(),
            producer: "identity".into(),
            db: self.db.clone(),
            directory: directory.clone(),
            handler: Arc::new(RevokeDeletedUsers(self.revocations.clone())),
            max_attempts: dure_chassis::events::DEFAULT_MAX_ATTEMPTS,
            nats: self.nats.clone(),
        };
        tokio::spawn(consumer.run())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// What notice tells the registry and the gateway about itself.
pub fn descriptor() -> Descriptor {
    Descriptor {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: vec!["/api/notice".into()],
    }
}

/// Runs notice on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let notices = Notices::start(&config).await?;
    let directory = Directory::start(&config.discovery);
    let (api, openapi) = api::router().with_state(notices.clone()).split_for_parts();
    let parts = DomainParts {
        api,
        openapi,
        db: notices.db.clone(),
        outbox: Some(notices.outbox.clone()),
        revocations: notices.revocations.clone(),
        background: vec![notices.consume(&directory)],
    };
    serve_domain(descriptor(), &config, &directory, parts, listener, shutdown)
        .await
        .context("serving notice")
}
