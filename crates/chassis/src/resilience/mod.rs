//! Keeping one failing dependency from taking others down with it.
//!
//! - [`breaker`]: a circuit breaker over a sliding window of calls.
//! - [`bulkhead`]: a cap on concurrent calls to one dependency; full means
//!   an immediate refusal, not a queue.
//! - [`outlier`]: ejecting an instance that keeps failing, for a growing
//!   time, never every instance.
//! - [`budget`]: retries limited to a share of requests, so that they can
//!   never multiply load.
//!
//! Each keeps its state in memory per process and exports it in
//! `/metrics`; docs/resilience.md describes the defaults.

pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod outlier;

pub use breaker::{Breaker, BreakerSettings, Outcome};
pub use budget::RetryBudget;
pub use bulkhead::Bulkhead;
pub use outlier::Ejection;
