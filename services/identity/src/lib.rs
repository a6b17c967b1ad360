//! identity: accounts, credentials, tokens and signing keys.
//!
//! identity owns its database (users, refresh tokens, signing keys, login
//! failures); no other service reads it. It signs EdDSA access tokens with a
//! key it creates on first start and publishes the public keys at
//! `/api/.well-known/jwks.json`, so other services verify tokens without
//! calling it.
//!
//! # Layout
//! - [`Identity`] (here): the service, declared for the chassis.
//! - [`config`]: identity's own flags (token lifetimes, throttling, first
//!   admin) resolved into validated `Settings`.
//! - [`api`]: the HTTP handlers, split into `account` and `session`.
//! - [`domain`]: `Username`, `Email`, `DisplayName`, `NewPassword`, which
//!   validate on construction.
//! - [`users`], [`refresh`], [`keys`], [`throttle`]: the tables and the rules
//!   on them (refresh-token rotation with reuse detection, Ed25519 keys,
//!   login throttling).
//! - [`events`]: the `user.*` events identity publishes through its outbox.
//! - [`erasure`]: account erasure as a saga that identity orchestrates.
//! - [`passwords`]: Argon2id hashing off the async workers.
//! - [`admin`]: the first admin account.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod domain;
pub mod erasure;
pub mod events;
pub mod keys;
pub mod passwords;
pub mod refresh;
pub mod throttle;
pub mod users;

pub use config::{Args, Settings};

use dure_chassis::auth::TokenVerifier;
use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Outbox;
use dure_chassis::service::{Base, Service, Subscription};
use dure_contracts::events::{
    ErasureRequested, Payload, UserDeleted, UserErased, UserRegistered, UserUpdated,
};
use keys::Keyring;
use passwords::Passwords;
use std::sync::Arc;
use std::time::Duration;
use throttle::LoginThrottle;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// identity's schema, on either backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The identity service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Identity {
    db: Db,
    outbox: Outbox,
    keys: Arc<Keyring>,
    passwords: Passwords,
    throttle: LoginThrottle,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    erasure: erasure::Policy,
}

impl Service for Identity {
    const NAME: &'static str = "identity";
    const ABOUT: &'static str = "dure's identity service: accounts, login and tokens";
    const PORT: u16 = 7001;
    const ROUTES: &'static [&'static str] = &[
        "/api/users",
        "/api/user",
        "/api/login",
        "/api/logout",
        "/api/token",
        "/api/.well-known",
        "/api/admin/users",
        "/api/admin/signing-keys",
    ];
    const PUBLISHES: &'static [&'static str] = &[
        UserRegistered::TYPE,
        UserUpdated::TYPE,
        UserDeleted::TYPE,
        ErasureRequested::TYPE,
        UserErased::TYPE,
    ];
    type Args = Args;
    type Settings = Settings;

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    fn settings(args: &Args, file: &ConfigFile) -> Result<Settings, ConfigError> {
        args.resolve(file)
    }

    /// Loads (or creates) the signing key and the first admin.
    async fn start(base: Base, settings: Settings) -> anyhow::Result<Self> {
        let outbox = base.outbox()?;
        let keys = Arc::new(Keyring::open(&base.db).await?);
        tokio::spawn(reload_keys(keys.clone()));
        let passwords = Passwords::new().await?;
        admin::ensure_first_admin(
            &outbox,
            &base.db,
            &passwords,
            settings.admin_password.as_ref(),
        )
        .await?;
        tokio::spawn(erasure::retry(
            base.db.clone(),
            outbox.clone(),
            settings.erasure,
        ));
        Ok(Self {
            db: base.db,
            outbox,
            keys,
            passwords,
            throttle: settings.throttle,
            access_token_ttl: settings.access_token_ttl,
            refresh_token_ttl: settings.refresh_token_ttl,
            erasure: settings.erasure,
        })
    }

    fn api(&self) -> (axum::Router, utoipa::openapi::OpenApi) {
        api::api(self.clone())
    }

    /// The erasure saga's replies, from every participant.
    fn consumes(&self) -> Vec<Subscription> {
        let replies: Arc<dyn dure_chassis::events::Handler> = Arc::new(erasure::Replies {
            outbox: self.outbox.clone(),
        });
        erasure::PARTICIPANTS
            .iter()
            .map(|producer| Subscription {
                producer,
                handler: replies.clone(),
            })
            .collect()
    }

    /// identity checks the tokens it signed with its own keys.
    fn verifier(&self) -> Option<TokenVerifier> {
        Some(self.keys.verifier())
    }
}

/// Keeps this replica signing with the newest key, whichever replica
/// rotated it in.
async fn reload_keys(keys: Arc<Keyring>) {
    let mut every = tokio::time::interval(keys::RELOAD_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(err) = keys.reload().await {
            tracing::warn!(error = format!("{err:#}"), "cannot reload the signing keys");
        }
    }
}

impl Identity {
    pub fn db(&self) -> &Db {
        &self.db
    }
}
