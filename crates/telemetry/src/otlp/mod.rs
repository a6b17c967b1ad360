//! Trace export over OTLP/HTTP, without an OpenTelemetry SDK in between.
//!
//! `context` is a span's identity and its `traceparent` form, `sampler` the
//! standard samplers, `record` a span as it is queued, `settings` what the
//! `OTEL_*` variables ask for, `encode` the OTLP request in protobuf or
//! JSON, and `batch` the queue and the thread that sends it. The layer in
//! `super::spans` makes the records; [`Pipeline`] is what it holds.

pub mod batch;
pub mod context;
pub mod encode;
pub mod record;
pub mod sampler;
pub mod settings;

use batch::Batcher;
use sampler::Sampler;
use std::sync::Arc;

/// Where the layer's spans go: the sampler that decides which are recorded
/// and the queue they are exported from.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub sampler: Sampler,
    pub batcher: Arc<Batcher>,
}
