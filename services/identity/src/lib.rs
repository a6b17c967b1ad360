//! identity: accounts, credentials, tokens and signing keys.
//!
//! identity owns its database (users, refresh tokens, signing keys, login
//! failures); no other service reads it. It signs EdDSA access tokens with a
//! key it creates on first start and publishes the public keys at
//! `/api/.well-known/jwks.json`, so other services verify tokens without
//! calling it.
//!
//! # Layout
//! - [`config`]: `Args` (flags and env) resolved into a validated `Config`.
//! - [`api`]: the HTTP handlers, split into `account` and `session`.
//! - [`domain`]: `Username`, `Email`, `DisplayName`, `NewPassword`, which
//!   validate on construction.
//! - [`users`], [`refresh`], [`keys`], [`throttle`]: the tables and the rules
//!   on them (refresh-token rotation with reuse detection, Ed25519 keys,
//!   login throttling).
//! - [`events`]: the `user.*` events identity publishes through its outbox.
//! - [`passwords`]: Argon2id hashing off the async workers.
//! - [`admin`]: the first admin account.
//!
//! [`run`] serves the service on a bound listener until a shutdown future
//! resolves; [`Identity::app`] builds the router alone, for tests.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod keys;
pub mod passwords;
pub mod refresh;
pub mod throttle;
pub mod users;

pub use config::{Args, Config};

use anyhow::Context;
use axum::Router;
use axum::extract::Extension;
use dure_chassis::db::{Db, Migrations};
use dure_chassis::events::Outbox;
use dure_chassis::http::ServiceApp;
use dure_contracts::registry::Descriptor;
use keys::SigningKeys;
use passwords::Passwords;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use throttle::LoginThrottle;
use tokio::net::TcpListener;

/// The service's name: in the registry, in logs, in database names.
pub const NAME: &str = "identity";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// What identity's handlers share.
#[derive(Clone, Debug)]
pub struct Identity {
    db: Db,
    outbox: Outbox,
    keys: Arc<SigningKeys>,
    passwords: Passwords,
    throttle: LoginThrottle,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
}

impl Identity {
    /// Connects to the database, migrates it, loads (or creates) the signing
    /// key and the first admin.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database_url, &MIGRATIONS).await?;
        dure_chassis::events::install(&db).await?;
        let outbox = Outbox::start(NAME, db.clone(), config.bus.connect().await?);
        let keys = SigningKeys::load_or_create(&db).await?;
        let passwords = Passwords::new().await?;
        admin::ensure_first_admin(&outbox, &db, &passwords, config.admin_password.as_ref()).await?;
        Ok(Self {
            db,
            outbox,
            keys: Arc::new(keys),
            passwords,
            throttle: config.throttle,
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
        })
    }

    /// The whole HTTP surface: API, health, metrics, OpenAPI.
    pub fn app(&self, config: &Config) -> Router {
        self.service_app(config).into_router()
    }

    fn service_app(&self, config: &Config) -> ServiceApp {
        let (api, openapi) = api::router().with_state(self.clone()).split_for_parts();
        let verifier = Arc::new(self.keys.verifier());
        ServiceApp::new(api.layer(Extension(verifier)).merge(self.outbox.router()))
            .openapi(openapi)
            .trusted_proxies(config.service.trusted_proxies.clone())
            .readiness(self.db.readiness())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// What identity tells the registry and the gateway about itself.
pub fn descriptor() -> Descriptor {
    Descriptor {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        routes: [
            "/api/users",
            "/api/user",
            "/api/login",
            "/api/logout",
            "/api/token",
            "/api/.well-known",
        ]
        .map(str::to_owned)
        .to_vec(),
    }
}

/// Runs identity on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = Identity::start(&config).await?;
    let address = listener.local_addr().context("listener address")?;
    tracing::info!(%address, database = %config.database_url, "identity ready");
    dure_chassis::service::serve(
        descriptor(),
        &config.service,
        &config.discovery,
        identity.service_app(&config),
        listener,
        shutdown,
    )
    .await
    .context("serving HTTP")?;
    identity.db.close().await;
    tracing::info!("identity stopped");
    Ok(())
}
