//! Distributed traces: OpenTelemetry export and W3C `traceparent`
//! propagation.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other standard `OTEL_*`
//! variables (protocol, headers, timeout, sampler, batch settings, service
//! name, resource attributes) are read by the OpenTelemetry SDK. When export
//! is off no OpenTelemetry layer is installed and every helper here returns
//! at once, so tracing costs nothing.
//!
//! Spans go through a batch processor on its own thread with a blocking HTTP
//! client: a request never waits for an export, and a collector that is down
//! only costs dropped spans. [`Tracing::shutdown`] flushes what is queued.

use super::spans;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (and so worth propagating).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Who is exporting: the OpenTelemetry resource of this process.
#[derive(Debug, Clone)]
pub struct ServiceResource {
    /// `service.name`, unless `OTEL_SERVICE_NAME` says otherwise.
    pub name: String,
    pub version: String,
    pub instance_id: String,
}

/// The exporting pipeline of a process; flush it with [`shutdown`](Self::shutdown).
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports what is still queued, waiting at most the SDK's export timeout.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("flushing traces at shutdown failed: {err}");
        }
    }
}

/// Whether the environment asks for export.
pub fn export_requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
        && !std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true")
}

/// Builds the OTLP/HTTP pipeline. Protobuf unless `OTEL_EXPORTER_OTLP_PROTOCOL`
/// (or its traces variant) says `http/json`.
pub(super) fn pipeline(
    resource: &ServiceResource,
) -> anyhow::Result<(Tracing, opentelemetry_sdk::trace::Tracer)> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    let protocol_chosen = [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok());
    if !protocol_chosen {
        exporter = exporter.with_protocol(Protocol::HttpBinary);
    }
    let exporter = exporter.build()?;
    // The SDK's own detectors read OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES; ours fill in what they leave unset.
    let detected = opentelemetry_sdk::Resource::builder().build();
    let service_name = detected
        .get(&opentelemetry::Key::new("service.name"))
        .map(|v| v.to_string())
        .filter(|name| !name.starts_with("unknown_service"))
        .unwrap_or_else(|| resource.name.clone());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .with_attributes([
            KeyValue::new("service.version", resource.version.clone()),
            KeyValue::new("service.instance.id", resource.instance_id.clone()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("dure");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((Tracing { provider }, tracer))
}

/// The `traceparent` of the current span, to carry in an event or header.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = TraceParent(None);
    TraceContextPropagator::new().inject_context(&spans::current_context()?, &mut carrier);
    carrier.0
}

/// Makes the span `make` creates a child of the context a `traceparent`
/// names (an event's, or one read from a header); a missing or malformed one
/// leaves it where it would be without.
pub fn with_remote_parent(
    traceparent: Option<&str>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if !exporting() {
        return make();
    }
    let Some(traceparent) = traceparent else {
        return make();
    };
    let context = TraceContextPropagator::new().extract(&TraceParent(Some(traceparent.to_owned())));
    if !context.span().span_context().is_valid() {
        return make();
    }
    spans::with_remote_parent(context, make)
}

/// Like [`with_remote_parent`], with the `traceparent` of a request's headers.
pub fn with_parent_from_headers(
    headers: &axum::http::HeaderMap,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    with_remote_parent(traceparent, make)
}

/// Writes the `traceparent` (and `tracestate`) of `span` into outgoing
/// request headers, replacing what was there.
pub fn inject_headers(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    if !exporting() {
        return;
    }
    if let Some(context) = spans::context_of(span) {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// Whether the current span is being recorded for export (it was sampled).
/// A client span under an unsampled one would be dropped too: callers skip
/// making it and pass the current context on instead.
pub fn current_is_recording() -> bool {
    exporting() && spans::current_context().is_some_and(|context| context.span().is_recording())
}

/// Writes the current span's `traceparent` into outgoing request headers.
pub fn inject_current_headers(headers: &mut axum::http::HeaderMap) {
    inject_headers(&tracing::Span::current(), headers);
}

/// The current span's trace and span ids in hex, for log lines.
pub(super) fn current_ids() -> Option<(String, String)> {
    if !exporting() {
        return None;
    }
    let context = spans::current_context()?;
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// A carrier holding just `traceparent`.
struct TraceParent(Option<String>);

impl Extractor for TraceParent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

struct HeaderInjector<'a>(&'a mut axum::http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(key.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
