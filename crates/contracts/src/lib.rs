//! Wire types that cross dure's service boundaries, and nothing else.
//!
//! A service may depend on this crate to speak to another one, but this crate
//! holds no logic: only the shapes of what travels between processes.
//!
//! # Layout
//! - [`problem`]: RFC 9457 `application/problem+json` bodies, the one error
//!   format every dure endpoint answers with.
//! - [`registry`]: the registry's internal API (registrations, instances).
//! - [`events`]: the CloudEvents envelope and every event payload.
//! - [`jwks`]: the public signing keys identity publishes for token checks.

#![forbid(unsafe_code)]

pub mod events;
pub mod jwks;
pub mod problem;
pub mod registry;

pub use problem::{FieldError, Problem};
