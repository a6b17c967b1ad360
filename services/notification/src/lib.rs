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
//! - [`Notifications`] (here): the service, declared for the chassis.
//! - [`api`]: the HTTP handlers, including the live stream.
//! - [`handlers`]: what each consumed event changes.
//! - [`store`]: the tables and their queries.

#![forbid(unsafe_code)]

pub mod api;
pub mod handlers;
pub mod store;

use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Handler;
use dure_chassis::events::erasure::Participant;
use dure_chassis::service::{Base, NoArgs, Service, Subscription};
use dure_contracts::events::{ErasureConfirmed, ErasureFailed, Payload};
use std::sync::Arc;
use tokio::sync::Notify;

/// The services whose feeds notification follows.
pub const PRODUCERS: &[&str] = &["identity", "posting", "notice"];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// notification's schema, on either backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The notification service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Notifications {
    db: Db,
    /// Woken whenever an event was handled, for the live streams.
    news: Arc<Notify>,
    handler: Arc<dyn Handler>,
}

impl Service for Notifications {
    const NAME: &'static str = "notification";
    const ABOUT: &'static str = "dure's notification service: notifications and their live stream";
    const PORT: u16 = 7004;
    const ROUTES: &'static [&'static str] = &["/api/notifications"];
    /// Only the erasure saga's replies.
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
        let news = Arc::new(Notify::new());
        let participant = Participant::new(Self::NAME, base.outbox()?);
        Ok(Self {
            handler: Arc::new(handlers::NotificationEvents {
                revocations: base.revocations,
                news: news.clone(),
                participant,
            }),
            db: base.db,
            news,
        })
    }

    fn api(&self) -> (axum::Router, utoipa::openapi::OpenApi) {
        api::router().with_state(self.clone()).split_for_parts()
    }

    /// One consumer per producer, all with the same handler.
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

impl Notifications {
    pub fn db(&self) -> &Db {
        &self.db
    }
}
