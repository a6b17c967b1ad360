//! web: the community's HTML pages, a backend for the browser.
//!
//! web serves the pages a person uses (docs/web.md): server-rendered HTML
//! forms that work without JavaScript, one stylesheet and one small script
//! for the live notification badge. It owns one table, `sessions`, in its own
//! database, and no domain data: every page is made of answers from
//! identity, posting, notice and notification, called through a
//! [`Peer`](dure_chassis::peer::Peer) each (discovery, breaker, bulkhead, a
//! short timeout), as the signed-in user (their access token, kept in the
//! session and refreshed before it expires). A page whose part is missing
//! still renders and says what is unavailable.
//!
//! # Layout
//! - [`Web`] (here): the service, declared for the chassis, and its routes.
//! - [`session`]: the session cookie and table, token refresh, CSRF tokens,
//!   and the layer that finds each request's [`session::Viewer`].
//! - [`backend`]: calls to the other services and what they answer.
//! - [`page`]: rendering, the layout every page shares, error pages and the
//!   security headers of every answer.
//! - [`assets`]: the stylesheet and script, under content-hashed names.
//! - [`pages`]: the handlers, one module per part of the site.

#![forbid(unsafe_code)]

pub mod assets;
pub mod backend;
pub mod page;
pub mod pages;
pub mod session;

use axum::Router;
use axum::routing::{get, post};
use backend::Backend;
use dure_chassis::config::{ConfigError, ConfigFile, parse_duration};
use dure_chassis::db::{Db, Migrations};
use dure_chassis::discovery::Directory;
use dure_chassis::service::{Base, Service};
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
/// web's schema, on either backend: the sessions.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// web's own flags; each also reads the `DURE_*` variable shown.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Args {
    /// How long a page waits for posting, notice or notification [default: 800ms]
    #[arg(long, env = "DURE_WEB_PEER_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub peer_timeout: Option<Duration>,
    /// How long a page waits for identity, which hashes passwords on sign-in and sign-up [default: 3s]
    #[arg(long, env = "DURE_WEB_IDENTITY_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub identity_timeout: Option<Duration>,
}

/// web's own settings, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub peer_timeout: Duration,
    pub identity_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            peer_timeout: Duration::from_millis(800),
            identity_timeout: Duration::from_secs(3),
        }
    }
}

/// The web service; its handlers share this state.
#[derive(Clone, Debug)]
pub struct Web {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    backend: Backend,
    assets: assets::Assets,
}

impl Service for Web {
    const NAME: &'static str = "web";
    const ABOUT: &'static str = "dure's web service: the community's HTML pages";
    const PORT: u16 = 7005;
    const ROUTES: &'static [&'static str] = &["/"];
    const PUBLISHES: &'static [&'static str] = &[];
    type Args = Args;
    type Settings = Settings;

    fn migrations() -> &'static Migrations {
        &MIGRATIONS
    }

    fn settings(args: &Args, file: &ConfigFile) -> Result<Settings, ConfigError> {
        let defaults = Settings::default();
        Ok(Settings {
            peer_timeout: file.layer("peer_timeout", args.peer_timeout, defaults.peer_timeout)?,
            identity_timeout: file.layer(
                "identity_timeout",
                args.identity_timeout,
                defaults.identity_timeout,
            )?,
        })
    }

    async fn start(base: Base, settings: Settings) -> anyhow::Result<Self> {
        Ok(Self::new(base.db, base.directory, &settings))
    }

    fn api(&self) -> (Router, utoipa::openapi::OpenApi) {
        (self.router(), openapi())
    }
}

impl Web {
    pub fn new(db: Db, directory: Directory, settings: &Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                backend: Backend::new(directory, settings),
                assets: assets::Assets::new(),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub fn assets(&self) -> &assets::Assets {
        &self.inner.assets
    }

    /// Every page, the assets, and the layers around them: the session of
    /// each request, error pages with the site's header, security headers.
    pub fn router(&self) -> Router {
        use pages::{account, board, notices, notifications, postings, users};
        let html_fallback = || page::not_allowed;
        Router::new()
            .route("/", get(board::board).fallback(html_fallback()))
            .route(
                "/signup",
                get(account::signup_form)
                    .post(account::signup)
                    .fallback(html_fallback()),
            )
            .route(
                "/signin",
                get(account::signin_form)
                    .post(account::signin)
                    .fallback(html_fallback()),
            )
            .route("/signout", post(account::signout).fallback(html_fallback()))
            .route(
                "/settings",
                get(account::settings_form)
                    .post(account::settings)
                    .fallback(html_fallback()),
            )
            .route(
                "/settings/delete",
                get(account::delete_form)
                    .post(account::delete)
                    .fallback(html_fallback()),
            )
            .route(
                "/postings/new",
                get(postings::new_form)
                    .post(postings::publish)
                    .fallback(html_fallback()),
            )
            .route(
                "/postings/{id}",
                get(postings::show).fallback(html_fallback()),
            )
            .route(
                "/postings/{id}/edit",
                get(postings::edit_form)
                    .post(postings::edit)
                    .fallback(html_fallback()),
            )
            .route(
                "/postings/{id}/delete",
                post(postings::delete).fallback(html_fallback()),
            )
            .route(
                "/postings/{id}/comments",
                post(postings::comment).fallback(html_fallback()),
            )
            .route(
                "/postings/{id}/comments/{comment_id}/delete",
                post(postings::delete_comment).fallback(html_fallback()),
            )
            .route("/notices", get(notices::list).fallback(html_fallback()))
            .route(
                "/notices/new",
                get(notices::new_form)
                    .post(notices::publish)
                    .fallback(html_fallback()),
            )
            .route(
                "/notices/{id}",
                get(notices::show).fallback(html_fallback()),
            )
            .route(
                "/notices/{id}/delete",
                post(notices::delete).fallback(html_fallback()),
            )
            .route(
                "/notifications",
                get(notifications::list).fallback(html_fallback()),
            )
            .route(
                "/notifications/read-all",
                post(notifications::read_all).fallback(html_fallback()),
            )
            .route(
                "/notifications/{id}/read",
                post(notifications::read_one).fallback(html_fallback()),
            )
            .route(
                "/notifications/live",
                get(notifications::live).fallback(html_fallback()),
            )
            .route("/users/{id}", get(users::show).fallback(html_fallback()))
            .route(
                "/assets/{name}",
                get(assets::serve).fallback(html_fallback()),
            )
            // Every other path outside /api/ and /internal/ comes here
            // (the gateway routes them to the owner of `/`): a 404 page.
            .route("/{*rest}", axum::routing::any(page::not_found))
            // A form of at most 20,000 characters of any script, encoded.
            .layer(axum::extract::DefaultBodyLimit::max(page::FORM_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                session::layer,
            ))
            .layer(axum::middleware::map_response(page::security_headers))
            .with_state(self.clone())
    }
}

/// web serves pages, not a JSON API: its document has no paths.
fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("dure web")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("HTML pages; no JSON API."))
                .build(),
        )
        .build()
}
