//! posting: the board — postings and the comments under them.
//!
//! posting owns its database (postings, comments, and its own copy of each
//! author's display name, taken from the token's `name` claim when something
//! is written; no call to identity). Anyone may read; a signed-in user may
//! write; only the author or an admin may edit or delete. Lists are keyset
//! paginated on `(created_at, id)`.
//!
//! # Layout
//! - [`Board`] (here): the service, declared for the chassis.
//! - [`api`]: the HTTP handlers, `postings` and `comments`.
//! - [`store`]: the tables and their queries; writes append their events
//!   (`posting.*`, `comment.*`) to the outbox in the same transaction.
//! - [`handlers`]: what identity's `user.*` events change here.

#![forbid(unsafe_code)]

pub mod api;
pub mod handlers;
pub mod store;

use dure_chassis::auth::Revocations;
use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Outbox;
use dure_chassis::events::erasure::Participant;
use dure_chassis::service::{Base, NoArgs, Service, Subscription};
use dure_contracts::events::{
    CommentAdded, CommentDeleted, ErasureConfirmed, ErasureFailed, Payload, PostingDeleted,
    PostingPublished, PostingUpdated,
};
use std::sync::Arc;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// posting's schema, on either backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The posting service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Board {
    db: Db,
    outbox: Outbox,
    revocations: Revocations,
}

impl Service for Board {
    const NAME: &'static str = "posting";
    const ABOUT: &'static str = "dure's posting service: postings and their comments";
    const PORT: u16 = 7002;
    const ROUTES: &'static [&'static str] = &["/api/postings"];
    const PUBLISHES: &'static [&'static str] = &[
        PostingPublished::TYPE,
        PostingUpdated::TYPE,
        PostingDeleted::TYPE,
        CommentAdded::TYPE,
        CommentDeleted::TYPE,
        ErasureConfirmed::TYPE,
        ErasureFailed::TYPE,
    ];
    type Args = NoArgs;
    type Settings = ();

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    fn settings(_: &NoArgs, _: &ConfigFile) -> Result<(), ConfigError> {
        Ok(())
    }

    async fn start(base: Base, (): ()) -> anyhow::Result<Self> {
        Ok(Self {
            db: base.db.clone(),
            outbox: base.outbox()?,
            revocations: base.revocations,
        })
    }

    fn api(&self) -> (axum::Router, utoipa::openapi::OpenApi) {
        api::router().with_state(self.clone()).split_for_parts()
    }

    fn consumes(&self) -> Vec<Subscription> {
        vec![Subscription {
            producer: "identity",
            handler: Arc::new(handlers::UserEvents {
                revocations: self.revocations.clone(),
                participant: Participant::new(Self::NAME, self.outbox.clone()),
            }),
        }]
    }
}

impl Board {
    pub fn db(&self) -> &Db {
        &self.db
    }
}
