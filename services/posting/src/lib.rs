//! posting: the board — postings and the comments under them.
//!
//! posting owns its database (postings, comments, and its own copy of each
//! author's display name, taken from the token's `name` claim when something
//! is written; no call to identity). Anyone may read; a signed-in user may
//! write; only the author or an admin may edit or delete. Lists are keyset
//! paginated on `(created_at, id)`.
//!
//! # Layout
//! - [`config`]: `Args` resolved into a validated `Config`.
//! - [`api`]: the HTTP handlers, `postings` and `comments`.
//! - [`store`]: the tables and their queries; writes append their events
//!   (`posting.*`, `comment.added`) to the outbox in the same transaction.
//! - [`users`]: what identity's `user.*` events change here.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod store;
pub mod users;

pub use config::{Args, Config};

use anyhow::Context;
use dure_chassis::auth::Revocations;
use dure_chassis::db::{Db, Migrations};
use dure_chassis::discovery::Directory;
use dure_chassis::events::{Consumer, Outbox};
use dure_chassis::service::{DomainParts, serve_domain};
use dure_contracts::registry::Descriptor;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub const NAME: &str = "posting";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// What posting's handlers share.
#[derive(Clone, Debug)]
pub struct Posting {
    db: Db,
    outbox: Outbox,
    revocations: Revocations,
    /// JetStream, when the bus is NATS.
    nats: Option<async_nats::jetstream::Context>,
}

impl Posting {
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

    /// Follows identity's feed for `user.*` events.
    pub fn consume(&self, directory: &Directory) -> tokio::task::JoinHandle<()> {
        let consumer = Consumer {
            name: NAME.into(),
            producer: "identity".into(),
            db: self.db.clone(),
            directory: directory.clone(),
            handler: Arc::new(users::UserEvents {
                revocations: self.revocations.clone(),
            }),
            max_attempts: dure_chassis::events::DEFAULT_MAX_ATTEMPTS,
            nats: self.nats.clone(),
        };
        tokio::spawn(consumer.run())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// What posting tells the registry and the gateway about itself.
pub fn descriptor() -> Descriptor {
    Descriptor {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: vec!["/api/postings".into()],
    }
}

/// Runs posting on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let posting = Posting::start(&config).await?;
    let directory = Directory::start(&config.discovery);
    let (api, openapi) = api::router().with_state(posting.clone()).split_for_parts();
    let parts = DomainParts {
        api,
        openapi,
        db: posting.db.clone(),
        outbox: Some(posting.outbox.clone()),
        revocations: posting.revocations.clone(),
        background: vec![posting.consume(&directory)],
    };
    serve_domain(descriptor(), &config, &directory, parts, listener, shutdown)
        .await
        .context("serving posting")
}
