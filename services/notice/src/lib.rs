//! notice: announcements from the admins, read by everyone.
//!
//! notice owns its database of notices. Reading is open to all; publishing,
//! editing and deleting need the `admin` role in the caller's token. Lists
//! show pinned notices first, then the newest, keyset paginated on
//! `(pinned, created_at, id)`.
//!
//! # Layout
//! - [`Notices`] (here): the service, declared for the chassis. It follows
//!   identity's feed only so that a deleted user's tokens stop working here.
//! - [`api`]: the HTTP handlers.
//! - [`store`]: the table and its queries.

#![forbid(unsafe_code)]

pub mod api;
pub mod store;

use dure_chassis::auth::{Revocations, RevokeDeletedUsers};
use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Outbox;
use dure_chassis::service::{Base, NoArgs, Service, Subscription};
use dure_contracts::events::{NoticeDeleted, NoticePublished, Payload};
use std::sync::Arc;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// notice's schema, on either backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The notice service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Notices {
    db: Db,
    outbox: Outbox,
    revocations: Revocations,
}

impl Service for Notices {
    const NAME: &'static str = "notice";
    const ABOUT: &'static str = "dure's notice service: notices from the admins";
    const PORT: u16 = 7003;
    const ROUTES: &'static [&'static str] = &["/api/notice"];
    const PUBLISHES: &'static [&'static str] = &[NoticePublished::TYPE, NoticeDeleted::TYPE];
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
            handler: Arc::new(RevokeDeletedUsers(self.revocations.clone())),
        }]
    }
}

impl Notices {
    pub fn db(&self) -> &Db {
        &self.db
    }
}
