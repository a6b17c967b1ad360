//! reporting: reports across services, as a read model fed only by events.
//!
//! reporting owns its database: users, postings, comments and notices as
//! counted facts (no bodies), in generations. It calls no service to answer
//! a report; it follows the feeds of identity, posting and notice through
//! the chassis' consumers (inbox, retries, dead letters, lag metrics) into
//! the live generation, and every answer says how far it is (`as_of`, per
//! producer). `POST /api/reports/rebuild` replays every producer from
//! position 0 into a new generation and switches to it when it has caught
//! up. reporting also takes part in the erasure saga: it anonymises an
//! erased user and confirms. Admins only.
//!
//! # Layout
//! - [`Reports`] (here): the service, declared for the chassis.
//! - [`api`]: the HTTP handlers.
//! - [`projection`]: what each event changes in a generation.
//! - [`handlers`]: the live consumers, and the saga's reply.
//! - [`rebuild`]: filling a new generation by replay, and the switch.
//! - [`store`]: the reports' queries.

#![forbid(unsafe_code)]

pub mod api;
pub mod handlers;
pub mod projection;
pub mod rebuild;
pub mod store;

use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Handler;
use dure_chassis::events::erasure::Participant;
use dure_chassis::service::{Base, NoArgs, Service, Subscription};
use dure_contracts::events::{ErasureConfirmed, ErasureFailed, Payload};
use std::sync::Arc;

/// The service's name, as its saga steps know it.
pub const NAME: &str = "reporting";
/// The services whose feeds reporting follows.
pub const PRODUCERS: &[&str] = &["identity", "posting", "notice"];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// reporting's schema, on either backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The reporting service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Reports {
    db: Db,
    rebuilder: rebuild::Rebuilder,
    handler: Arc<dyn Handler>,
}

impl Service for Reports {
    const NAME: &'static str = NAME;
    const ABOUT: &'static str =
        "dure's reporting service: reports across services, from their events";
    const PORT: u16 = 7006;
    const ROUTES: &'static [&'static str] = &["/api/reports"];
    const PUBLISHES: &'static [&'static str] = &[ErasureConfirmed::TYPE, ErasureFailed::TYPE];
    type Args = NoArgs;
    type Settings = ();

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    fn settings(_: &NoArgs, _: &ConfigFile) -> Result<(), ConfigError> {
        Ok(())
    }

    async fn start(base: Base, (): ()) -> anyhow::Result<Self> {
        let rebuilder = rebuild::Rebuilder::new(base.db.clone(), base.directory.clone());
        tokio::spawn(rebuilder.clone().supervise());
        Ok(Self {
            handler: Arc::new(handlers::ReportEvents {
                backend: base.db.backend(),
                participant: Participant::new(NAME, base.outbox()?),
                revocations: base.revocations,
            }),
            db: base.db,
            rebuilder,
        })
    }

    fn api(&self) -> (axum::Router, utoipa::openapi::OpenApi) {
        api::router().with_state(self.clone()).split_for_parts()
    }

    fn consumes(&self) -> Vec<Subscription> {
        PRODUCERS
            .iter()
            .map(|producer| Subscription {
                producer,
                handler: self.handler.clone(),
            })
            .collect()
    }
}

impl Reports {
    pub fn db(&self) -> &Db {
        &self.db
    }
}
