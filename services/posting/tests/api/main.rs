//! posting over HTTP against a running service, on SQLite always and on
//! Postgres when `DURE_TEST_POSTGRES_URL` is set. Tokens come from a
//! stand-in issuer, as other services' tests need no identity.

mod helpers;

mod comments;
mod pagination;
mod postings;
