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
use super::otlp::batch::{Batcher, Form, Worker};
use super::otlp::context::SpanContext;
use super::otlp::encode::{self, Origin};
pub use super::otlp::record::SharedAttributes;
use super::otlp::record::{SpanKind, SpanRecord, Status, Value};
use super::otlp::settings::Settings;
use super::request::{self, RequestSpan};
use super::spans::{self, Parent};
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
    let form = if settings.json {
        Form::Records
    } else {
        Form::Encoded {
            head_room: encode::request_head_room(&origin),
        }
    };
    let batcher = Arc::new(Batcher::new(settings.max_queue, settings.max_batch, form));
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

/// Writes the `traceparent` of `span` into outgoing request headers,
/// replacing what was there (and dropping a `tracestate` that belonged to
/// another context).
pub fn inject_headers(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    if !exporting() {
        return;
    }
    if let Some(context) = spans::context_of(span) {
        set_traceparent(headers, &context);
    }
}

fn set_traceparent(headers: &mut axum::http::HeaderMap, context: &SpanContext) {
    let value = axum::http::HeaderValue::from_bytes(&context.traceparent())
        .expect("a traceparent is visible ASCII");
    headers.insert(TRACEPARENT.clone(), value);
    headers.remove(&TRACESTATE);
}

static TRACEPARENT: axum::http::HeaderName = axum::http::HeaderName::from_static("traceparent");
static TRACESTATE: axum::http::HeaderName = axum::http::HeaderName::from_static("tracestate");

/// The trace and span ids in hex of the span `event` happened in, for its
/// log line.
pub(super) fn event_ids(event: &tracing::Event<'_>) -> Option<(String, String)> {
    if !exporting() {
        return None;
    }
    let context = spans::event_context(event)?;
    Some((context.trace_id_hex(), context.span_id_hex()))
}

/// The target of the `tracing` span each request has for its log lines.
/// That span is never exported: the request's [`ServerSpan`] is.
pub const REQUEST_LINES: &str = "dure::request";

/// The server span of one request, recorded straight into the export queue
/// rather than as a `tracing` span (which would cost a registry entry,
/// filter checks, and an enter and exit on every poll). Its parent is the
/// request's `traceparent`. While the request runs in its
/// [`scope`](Self::scope), `tracing` spans made inside are its children and
/// log lines carry its ids. It ends when dropped.
pub struct ServerSpan(Option<Arc<RequestSpan>>);

impl ServerSpan {
    /// No span: the request is not traced.
    pub fn none() -> Self {
        Self(None)
    }

    /// Starts the span of the request with `headers`, named by `name` and
    /// with string `attributes`.
    pub fn start(
        headers: &axum::http::HeaderMap,
        name: impl FnOnce() -> String,
        attributes: &[(&'static str, &str)],
    ) -> Self {
        if !exporting() {
            return Self(None);
        }
        let remote = headers
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(SpanContext::from_traceparent);
        let started = spans::start_direct(
            Parent::Remote(remote),
            SpanKind::Server,
            name,
            None,
            attributes,
        );
        Self(started.map(|started| Arc::new(RequestSpan::new(started.context, started.recording))))
    }

    /// Runs the request's handling, `future`, as this span's work.
    pub fn scope<F: std::future::Future>(
        &self,
        future: F,
    ) -> impl std::future::Future<Output = F::Output> {
        request::scope(self.0.clone(), future)
    }

    /// Runs `work` as this span's work (a log line about the request).
    pub fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.0 {
            Some(request) => request::in_request(request, work),
            None => work(),
        }
    }

    /// Renames the span and its route, for a request whose route was only
    /// known once it was handled.
    pub fn set_route(&self, name: impl FnOnce() -> String, route: &str) {
        if let Some(request) = &self.0 {
            request.update(|record| {
                record.name = name().into();
                for (key, value) in &mut record.attributes {
                    if *key == "http.route" {
                        *value = Value::Str(route.to_owned());
                    }
                }
            });
        }
    }

    /// Records the response's status; a server error fails the span.
    pub fn response_status(&self, status: u16) {
        if let Some(request) = &self.0 {
            request.update(|record| record_status(record, status));
        }
    }
}

/// `http.response.status_code`, and a failed span for a server error.
fn record_status(record: &mut SpanRecord, status: u16) {
    record
        .attributes
        .push(("http.response.status_code", Value::I64(status.into())));
    if status >= 500 && record.status == Status::Unset {
        record.status = Status::Error(String::new());
    }
}

/// A client span recorded straight into the export queue rather than as a
/// `tracing` span, for an outgoing call that logs nothing while it runs
/// (the gateway's upstream call): there a `tracing` span's bookkeeping
/// would cost more than the rest of the span. It is a child of the current
/// span, its `traceparent` goes into the request it is started for, and it
/// ends when dropped.
pub struct ClientSpan {
    recording: Option<(SpanRecord, Arc<Batcher>)>,
}

impl ClientSpan {
    /// Starts the span of the call whose request has `headers`, named by
    /// `name` and with the `attributes` of whom it calls. Under a span that
    /// is not sampled nothing is recorded, but the request still carries the
    /// trace on.
    pub fn start(
        headers: &mut axum::http::HeaderMap,
        name: impl FnOnce() -> String,
        attributes: &SharedAttributes,
    ) -> Self {
        if !exporting() {
            return Self { recording: None };
        }
        let Some(started) = spans::start_direct(
            Parent::Current,
            SpanKind::Client,
            name,
            Some(attributes),
            &[],
        ) else {
            return Self { recording: None };
        };
        set_traceparent(headers, &started.context);
        Self {
            recording: started.recording,
        }
    }

    /// Records the response's status; a server error fails the span.
    pub fn response_status(&mut self, status: u16) {
        if let Some((record, _)) = &mut self.recording {
            record_status(record, status);
        }
    }

    /// Marks the call failed: no response came.
    pub fn fail(&mut self) {
        if let Some((record, _)) = &mut self.recording {
            record.status = Status::Error(String::new());
        }
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        if let Some((record, batcher)) = self.recording.take() {
            batcher.end(record);
        }
    }
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
