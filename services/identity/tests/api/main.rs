//! identity over HTTP against a running service, on SQLite always and on
//! Postgres when `DURE_TEST_POSTGRES_URL` is set. One test binary with
//! modules keeps link time low.

mod helpers;

mod account;
mod bad_input;
mod platform;
mod sessions;
mod sign_up;
mod tokens;
