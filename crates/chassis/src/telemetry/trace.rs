//! Distributed traces: OpenTelemetry export and W3C `traceparent`
//! propagation.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other standard `OTEL_*`
//! variables (protocol, headers, timeout, sampler, batch settings, service
//! name, resource attributes) are read by `super::otlp::settings`. When
//! export is off no export layer is installed and every helper here returns
//! at once, so tracing costs nothing.
//!
//! Finished spans are queued and sent in batches by a thread of their own:
//! a request never waits for an export, and a collector that is down only
//! costs dropped spans. [`Tracing::shutdown`] flushes what is queued.

use super::otlp::Pipeline;
use super::otlp::batch::{Batcher, Worker};
use super::otlp::context::SpanContext;
use super::otlp::encode::Origin;
use super::otlp::record::Value;
use super::otlp::settings::Settings;
use super::spans;
use std::sync::Arc;
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
    worker: Worker,
}

impl Tracing {
    /// Exports what is still queued, waiting at most `OTEL_BSP_EXPORT_TIMEOUT`.
    pub fn shutdown(self) {
        if let Err(err) = self.worker.stop() {
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

/// Starts the OTLP/HTTP export the `OTEL_*` variables describe, for the
/// process `resource` names; returns it and what the span layer feeds.
pub(super) fn pipeline(resource: &ServiceResource) -> anyhow::Result<(Tracing, Pipeline)> {
    let settings = Settings::from_env().map_err(anyhow::Error::msg)?;
    let origin = origin(resource, &settings);
    let batcher = Arc::new(Batcher::new(settings.max_queue, settings.max_batch));
    let pipeline = Pipeline {
        sampler: settings.sampler.clone(),
        batcher: batcher.clone(),
    };
    let worker = Worker::start(batcher, settings, origin)?;
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((Tracing { worker }, pipeline))
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES`, then the service's name
/// (unless `OTEL_SERVICE_NAME` or those attributes set one), version and
/// instance id, and what exported the spans.
fn origin(resource: &ServiceResource, settings: &Settings) -> Origin {
    let mut attributes: Vec<(String, Value)> = settings
        .resource_attributes
        .iter()
        .filter(|(key, _)| key != "service.name")
        .map(|(key, value)| (key.clone(), Value::Str(value.clone())))
        .collect();
    let name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| resource.name.clone());
    for (key, value) in [
        ("service.name", name),
        ("service.version", resource.version.clone()),
        ("service.instance.id", resource.instance_id.clone()),
        ("telemetry.sdk.name", "dure".to_owned()),
        ("telemetry.sdk.language", "rust".to_owned()),
        (
            "telemetry.sdk.version",
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ] {
        if !attributes.iter().any(|(k, _)| k == key) {
            attributes.push((key.to_owned(), Value::Str(value)));
        }
    }
    Origin {
        resource: attributes,
        scope: "dure",
        scope_version: env!("CARGO_PKG_VERSION"),
    }
}

/// The `traceparent` of the current span, to carry in an event or header.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let traceparent = spans::current_context()?.traceparent();
    Some(String::from_utf8_lossy(&traceparent).into_owned())
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
    match traceparent.and_then(SpanContext::from_traceparent) {
        Some(parent) => spans::with_remote_parent(parent, make),
        None => make(),
    }
}

/// Like [`with_remote_parent`], with the `traceparent` of a request's headers.
pub fn with_parent_from_headers(
    headers: &axum::http::HeaderMap,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    with_remote_parent(traceparent, make)
}

/// Writes the `traceparent` of `span` into outgoing request headers,
/// replacing what was there (and dropping a `tracestate` that belonged to
/// another context).
pub fn inject_headers(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    if !exporting() {
        return;
    }
    if let Some(context) = spans::context_of(span) {
        let value = axum::http::HeaderValue::from_bytes(&context.traceparent())
            .expect("a traceparent is visible ASCII");
        headers.insert(TRACEPARENT.clone(), value);
        headers.remove(&TRACESTATE);
    }
}

static TRACEPARENT: axum::http::HeaderName = axum::http::HeaderName::from_static("traceparent");
static TRACESTATE: axum::http::HeaderName = axum::http::HeaderName::from_static("tracestate");

/// Whether the current span is being recorded for export (it was sampled).
/// A client span under an unsampled one would be dropped too: callers skip
/// making it and pass the current context on instead.
pub fn current_is_recording() -> bool {
    exporting() && spans::current_context().is_some_and(|context| context.sampled)
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
    Some((context.trace_id_hex(), context.span_id_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_names_the_service_unless_the_environment_does() {
        let resource = ServiceResource {
            name: "posting".into(),
            version: "0.1.0".into(),
            instance_id: "posting-1a2b3c4d".into(),
        };
        let settings = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Settings::from_lookup(|name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .unwrap()
        };
        let value = |origin: &Origin, key: &str| {
            origin
                .resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let plain = origin(
            &resource,
            &settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")]),
        );
        assert_eq!(
            value(&plain, "service.name"),
            Some(Value::Str("posting".into()))
        );
        assert_eq!(
            value(&plain, "service.instance.id"),
            Some(Value::Str("posting-1a2b3c4d".into()))
        );
        let renamed = origin(
            &resource,
            &settings(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,region=eu"),
            ]),
        );
        assert_eq!(
            value(&renamed, "service.name"),
            Some(Value::Str("edge".into()))
        );
        assert_eq!(value(&renamed, "region"), Some(Value::Str("eu".into())));
        assert_eq!(
            renamed
                .resource
                .iter()
                .filter(|(k, _)| k == "service.name")
                .count(),
            1
        );
    }
}
