//! The chassis every dure service stands on.
//!
//! A service is a library that builds an axum router from its own state; the
//! chassis supplies everything around that router which is the same for every
//! service, so that services contain only their domain.
//!
//! # Layout
//! - [`config`]: layered typed settings (defaults < `dure.toml` < env < flags).
//! - [`service`] (feature `storage`): the service shape — the [`Service`](service::Service)
//!   trait a domain service implements and `run`, which starts any service
//!   in any topology.
//! - [`serving`]: what every process shares: its flags, where it listens
//!   (a port or a name in this process), serving while registered.
//! - [`telemetry`]: log subscriber (text or JSON), OpenTelemetry trace export
//!   and `traceparent` propagation, and the Prometheus recorder; re-exported
//!   from the dure-telemetry crate.
//! - [`process`]: the `main` of a service process: runtime, start, flush.
//! - [`http`]: the standard endpoints and layers, and `serve(listener, app,
//!   shutdown, grace)` with graceful shutdown.
//! - [`error`]: `ApiError`, rendered as RFC 9457 problem+json.
//! - [`discovery`]: registering with the registry, and finding instances
//!   (registry watch, static peers, DNS).
//! - [`events`]: transactional outbox, sequenced feed, idempotent consumers.
//! - [`resilience`]: circuit breaker, bulkhead, outlier ejection, retry budget.
//! - [`client`]: the HTTP client of every call between services, to
//!   `http://` addresses and to `local://` ones.
//! - [`local`]: routers of this process, bound by name and called as tower
//!   services without a socket (the single-process topology).
//! - [`peer`]: calling another service by name: discovery + resilience +
//!   request id, over [`client`].
//! - [`db`]: SQLite/Postgres pool with per-backend migrations.
//! - [`auth`]: access-token verification against identity's keys; `Claims`.
//! - [`pagination`]: keyset pagination with declared cursors.
//! - [`openapi`]: schemas of validated values (text fields) and the answers
//!   of the layers around handlers, added to every operation's document.
//! - `testing` (feature `testing`): fresh test databases on both backends
//!   and a stand-in token issuer, for services' test suites.
//! - [`clock`]: timestamps in the one text form services store and send.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
#[cfg(feature = "storage")]
pub mod db;
pub mod discovery;
pub mod error;
#[cfg(feature = "storage")]
pub mod events;
pub mod http;
pub mod local;
pub mod openapi;
pub mod pagination;
pub mod peer;
pub mod process;
pub mod resilience;
#[cfg(feature = "storage")]
pub mod service;
pub mod serving;
#[cfg(feature = "testing")]
pub mod testing;

pub use dure_telemetry as telemetry;
pub use error::ApiError;
