//! The layer that records `tracing` spans for OTLP export.
//!
//! Each exported `tracing` span gets its identity when it is created, and
//! the sampler decides at once: an unsampled span formats none of its fields
//! and only carries its context on for propagation. A sampled span's fields
//! become attributes, except OpenTelemetry's special ones: `otel.name` (the
//! span's name), `otel.kind` and `otel.status_code`. Events inside a span
//! (warnings and errors, as the filter lets through) become span events; an
//! error marks the span failed. When the `tracing` span closes its record
//! is queued for export. Entering and leaving a span cost nothing here: the
//! context is looked up from the span when a helper in [`super::trace`]
//! needs it.
//!
//! A span whose parent is in another process is made inside
//! [`with_remote_parent`], which hands the parent to the span being created.

use super::otlp::Pipeline;
use super::otlp::batch::Batcher;
use super::otlp::context::{SpanContext, new_span_id, new_trace_id};
use super::otlp::record::{self, SharedAttributes, SpanEvent, SpanKind, SpanRecord, Status, Value};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Debug;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Records exported spans into `pipeline`.
pub(super) struct ExportLayer {
    pipeline: Pipeline,
}

impl ExportLayer {
    pub(super) fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

/// What is exported: info spans and up (but not the requests' spans for
/// log lines), and warnings and errors as span events, whatever `RUST_LOG`
/// says about log lines.
pub(super) fn exported()
-> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        if meta.is_span() {
            *meta.level() <= tracing::Level::INFO && meta.target() != super::trace::REQUEST_LINES
        } else {
            *meta.level() <= tracing::Level::WARN
        }
    })
    // Without a hint the process's most verbose level would be trace, and
    // every debug and trace callsite would be asked again at each call.
    .with_max_level_hint(tracing::Level::INFO)
}

/// Kept in an exported span's extensions: its context, and its record
/// while it is open if it is sampled.
struct Exported {
    context: SpanContext,
    record: Option<SpanRecord>,
}

thread_local! {
    /// The remote parent of the span being created, set by
    /// [`with_remote_parent`].
    static REMOTE_PARENT: Cell<Option<SpanContext>> = const { Cell::new(None) };
}

/// Runs `make` (which creates one span) so that the span it creates, if
/// exported, is a child of `parent`, a context from another process.
pub(super) fn with_remote_parent<T>(parent: SpanContext, make: impl FnOnce() -> T) -> T {
    REMOTE_PARENT.with(|slot| slot.set(Some(parent)));
    let made = make();
    // Left unused when the span was not exported (a debug span, say).
    REMOTE_PARENT.with(Cell::take);
    made
}

/// The context of the nearest exported span among `id` and its ancestors.
fn context_in(registry: &Registry, id: &Id) -> Option<SpanContext> {
    registry.span(id)?.scope().find_map(|span| {
        span.extensions()
            .get::<Exported>()
            .map(|exported| exported.context)
    })
}

/// The context of `span`, or of its nearest exported ancestor.
pub(super) fn context_of(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| context_in(dispatch.downcast_ref::<Registry>()?, id))
        .flatten()
}

/// The context of the current span or of its nearest exported ancestor.
fn current_in(registry: &Registry) -> Option<SpanContext> {
    let current = tracing::Subscriber::current_span(registry);
    context_in(registry, current.id()?)
}

/// The context of the current span or of its nearest exported ancestor,
/// or else of the request being handled.
pub(super) fn current_context() -> Option<SpanContext> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch.downcast_ref::<Registry>().and_then(current_in)
    })
    .or_else(super::request::current_context)
}

/// The context an event happened in: its explicit parent's or the current
/// span's, or else the request's.
pub(super) fn event_context(event: &Event<'_>) -> Option<SpanContext> {
    let in_span = match event.parent() {
        Some(parent) => tracing::dispatcher::get_default(|dispatch| {
            context_in(dispatch.downcast_ref::<Registry>()?, parent)
        }),
        None if event.is_contextual() => tracing::dispatcher::get_default(|dispatch| {
            dispatch.downcast_ref::<Registry>().and_then(current_in)
        }),
        None => return None,
    };
    in_span.or_else(super::request::current_context)
}

impl ExportLayer {
    /// The identity of a new span under `parent`: its trace's, or a new
    /// trace's, and sampled as the sampler says.
    fn child_of(&self, parent: Option<&SpanContext>) -> SpanContext {
        let trace_id = parent.map_or_else(new_trace_id, |parent| parent.trace_id);
        SpanContext {
            trace_id,
            span_id: new_span_id(),
            sampled: self.pipeline.sampler.sample(parent, trace_id),
            remote: false,
        }
    }
}

/// The record of a sampled span starting now.
fn open_record(
    context: SpanContext,
    parent: Option<&SpanContext>,
    kind: SpanKind,
    name: Cow<'static, str>,
    attributes: usize,
) -> SpanRecord {
    SpanRecord {
        context,
        parent_span_id: parent.map_or(0, |parent| parent.span_id),
        parent_is_remote: parent.is_some_and(|parent| parent.remote),
        name,
        kind,
        start: record::now(),
        end: 0,
        shared: None,
        attributes: Vec::with_capacity(attributes),
        events: Vec::new(),
        status: Status::Unset,
    }
}

/// Where a span recorded without a `tracing` span (see [`super::request`]
/// and [`super::trace::ClientSpan`]) hangs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Parent {
    /// Under the current span.
    Current,
    /// Under a span of another process, or a root when there is none.
    Remote(Option<SpanContext>),
}

/// A span started without a `tracing` span: its identity, and its record
/// and queue if it is sampled.
pub(super) struct Started {
    pub context: SpanContext,
    pub recording: Option<(SpanRecord, Arc<Batcher>)>,
}

/// Starts a span of `kind` under `parent`, with `shared` attributes and
/// string `attributes` of its own, sampled as the export layer samples;
/// none when no export layer is installed.
pub(super) fn start_direct(
    parent: Parent,
    kind: SpanKind,
    name: impl FnOnce() -> String,
    shared: Option<&SharedAttributes>,
    attributes: &[(&'static str, &str)],
) -> Option<Started> {
    let (parent, context, batcher) = tracing::dispatcher::get_default(|dispatch| {
        let layer = dispatch.downcast_ref::<ExportLayer>()?;
        let parent = match parent {
            Parent::Remote(remote) => remote,
            Parent::Current => dispatch
                .downcast_ref::<Registry>()
                .and_then(current_in)
                .or_else(super::request::current_context),
        };
        let context = layer.child_of(parent.as_ref());
        Some((parent, context, layer.pipeline.batcher.clone()))
    })?;
    let recording = context.sampled.then(|| {
        let mut record = open_record(
            context,
            parent.as_ref(),
            kind,
            name().into(),
            // and the response status every server and client span gets
            attributes.len() + 1,
        );
        record.shared = shared.cloned();
        record.attributes.extend(
            attributes
                .iter()
                .map(|(key, value)| (*key, Value::Str((*value).to_owned()))),
        );
        (record, batcher)
    });
    Some(Started { context, recording })
}

impl<S> Layer<S> for ExportLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = REMOTE_PARENT
            .with(Cell::take)
            .or_else(|| {
                // The nearest ancestor this layer sees, i.e. an exported one.
                span.parent()
                    .and_then(|parent| parent.extensions().get::<Exported>().map(|e| e.context))
            })
            .or_else(super::request::current_context);
        let context = self.child_of(parent.as_ref());
        let record = context.sampled.then(|| {
            let mut record = open_record(
                context,
                parent.as_ref(),
                SpanKind::Internal,
                attrs.metadata().name().into(),
                attrs.fields().len(),
            );
            attrs.record(&mut FieldRecorder(&mut record));
            record
        });
        span.extensions_mut().insert(Exported { context, record });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(Exported {
            record: Some(record),
            ..
        }) = extensions.get_mut::<Exported>()
        {
            values.record(&mut FieldRecorder(record));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        // The nearest exported span, or else the request; if that is not
        // sampled, neither is the event.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let mut extensions = span.extensions_mut();
                let Some(exported) = extensions.get_mut::<Exported>() else {
                    continue;
                };
                if let Some(record) = exported.record.as_mut() {
                    add_event(record, event);
                }
                return;
            }
        }
        super::request::with_current_record(|record| add_event(record, event));
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let exported = span.extensions_mut().remove::<Exported>();
        if let Some(Exported {
            record: Some(record),
            ..
        }) = exported
        {
            self.pipeline.batcher.end(record);
        }
    }
}

/// Adds `event` (a warning or an error) to `record`; an error fails it.
fn add_event(record: &mut SpanRecord, event: &Event<'_>) {
    let level = *event.metadata().level();
    let mut fields = EventFields::default();
    event.record(&mut fields);
    fields
        .attributes
        .push(("level", Value::Str(level.as_str().to_owned())));
    if level == tracing::Level::ERROR {
        record.status = Status::Error(fields.message.clone());
    }
    record.events.push(SpanEvent {
        time: record::now(),
        name: fields.message,
        attributes: fields.attributes,
    });
}

/// Writes a span's fields into its record.
struct FieldRecorder<'a>(&'a mut SpanRecord);

impl FieldRecorder<'_> {
    /// Handles OpenTelemetry's special fields; false for an attribute.
    fn special(&mut self, field: &Field, text: &str) -> bool {
        match field.name() {
            "otel.name" => self.0.name = text.to_owned().into(),
            "otel.kind" => self.0.kind = SpanKind::from_name(text),
            "otel.status_code" => match text.trim_matches('"') {
                "error" | "ERROR" => self.0.status = Status::Error(String::new()),
                "ok" | "OK" => self.0.status = Status::Ok,
                _ => {}
            },
            _ => return false,
        }
        true
    }

    fn attribute(&mut self, field: &Field, value: Value) {
        if !field.name().starts_with("otel.") {
            self.0.attributes.push((field.name(), value));
        }
    }
}

impl Visit for FieldRecorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.special(field, value) {
            self.attribute(field, Value::Str(value.to_owned()));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attribute(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attribute(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attribute(
            field,
            i64::try_from(value).map_or_else(|_| Value::Str(value.to_string()), Value::I64),
        );
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attribute(field, Value::F64(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "otel.name" {
            self.0.name = text.into();
        } else if !self.special(field, &text) {
            self.attribute(field, Value::Str(text));
        }
    }
}

/// An event's message (its name as a span event) and its other fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<(&'static str, Value)>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes
                .push((field.name(), Value::Str(value.to_owned())));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.attributes.push((field.name(), Value::Str(text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::otlp::batch::Form;
    use super::super::otlp::sampler::Sampler;
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Runs `work` with only the export layer installed, sampling as
    /// `sampler` says; returns what was queued for export.
    fn exported_by(sampler: Sampler, work: impl FnOnce()) -> Vec<SpanRecord> {
        let batcher = Arc::new(Batcher::new(1024, 512, Form::Records));
        let pipeline = Pipeline {
            sampler,
            batcher: batcher.clone(),
        };
        let subscriber =
            tracing_subscriber::registry().with(ExportLayer::new(pipeline).with_filter(exported()));
        tracing::subscriber::with_default(subscriber, work);
        batcher.take()
    }

    #[test]
    fn spans_keep_their_parents_fields_and_warnings() {
        let spans = exported_by(Sampler::AlwaysOn, || {
            let request = tracing::info_span!(
                "request",
                otel.name = "GET unmatched",
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.route = "/api/postings",
                http.response.status_code = tracing::field::Empty,
            );
            request.in_scope(|| {
                // Not exported: a debug span between the two is skipped.
                let quiet = tracing::debug_span!("quiet");
                quiet.in_scope(|| {
                    let db = tracing::info_span!("db insert", rows = 3_u64);
                    db.in_scope(|| tracing::warn!(table = "postings", "slow statement"));
                });
            });
            request.record("http.response.status_code", 503_u64);
            request.record("otel.status_code", "error");
            request.record("otel.name", "GET /api/postings");
        });
        assert_eq!(spans.len(), 2, "{spans:?}");
        let (db, request) = (&spans[0], &spans[1]);
        assert_eq!(request.name, "GET /api/postings");
        assert_eq!(request.kind, SpanKind::Server);
        assert_eq!(request.parent_span_id, 0);
        assert!(matches!(request.status, Status::Error(_)));
        assert_eq!(
            request.attribute("http.route"),
            Some(&Value::Str("/api/postings".into()))
        );
        assert_eq!(
            request.attribute("http.response.status_code"),
            Some(&Value::I64(503))
        );
        assert!(request.attribute("otel.name").is_none());
        assert!(request.start <= request.end && request.start > 0);

        assert_eq!(db.name, "db insert");
        assert_eq!(db.kind, SpanKind::Internal);
        assert_eq!(db.context.trace_id, request.context.trace_id);
        assert_eq!(db.parent_span_id, request.context.span_id);
        assert!(!db.parent_is_remote);
        assert_eq!(db.attribute("rows"), Some(&Value::I64(3)));
        let event = db.events.first().expect("the warning is an event");
        assert_eq!(event.name, "slow statement");
        assert!(
            event
                .attributes
                .contains(&("level", Value::Str("WARN".into())))
        );
        assert!(
            event
                .attributes
                .contains(&("table", Value::Str("postings".into())))
        );
    }

    #[test]
    fn a_remote_parent_is_given_to_the_span_made_for_it() {
        let remote = SpanContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        let spans = exported_by(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), || {
            let consume = with_remote_parent(remote, || {
                tracing::info_span!("consume", otel.kind = "consumer")
            });
            drop(consume);
            // The next span is not given it.
            drop(tracing::info_span!("later"));
        });
        assert_eq!(
            spans.len(),
            1,
            "a root under parent-based always-off is dropped"
        );
        assert_eq!(spans[0].context.trace_id, remote.trace_id);
        assert_eq!(spans[0].parent_span_id, remote.span_id);
        assert!(spans[0].parent_is_remote);
        assert_eq!(spans[0].kind, SpanKind::Consumer);
    }

    /// Starts a direct client span named "GET posting" under the current span.
    fn client_call() -> Option<Started> {
        start_direct(
            Parent::Current,
            SpanKind::Client,
            || "GET posting".into(),
            Some(&SharedAttributes::new(&[("peer.service", "posting")])),
            &[("url.path", "/api/postings")],
        )
    }

    #[test]
    fn a_direct_span_is_a_child_of_the_current_span() {
        let mut direct = None;
        let spans = exported_by(Sampler::AlwaysOn, || {
            let handler = tracing::info_span!("handler");
            let started = handler.in_scope(client_call);
            direct = Some((context_of(&handler).unwrap(), started));
        });
        let (handler, started) = direct.unwrap();
        let (record, _) = started.unwrap().recording.expect("sampled");
        assert_eq!(spans.len(), 1, "only the handler went through the layer");
        assert_eq!(record.name, "GET posting");
        assert_eq!(record.kind, SpanKind::Client);
        assert_eq!(record.context.trace_id, handler.trace_id);
        assert_eq!(record.parent_span_id, handler.span_id);
        assert_ne!(record.context.span_id, handler.span_id);
        assert_eq!(
            record.attribute("peer.service"),
            Some(&Value::Str("posting".into()))
        );
        assert_eq!(
            record.attribute("url.path"),
            Some(&Value::Str("/api/postings".into()))
        );
        assert!(record.start > 0);
        // Without the export layer there is nothing to start.
        assert!(client_call().is_none());
    }

    #[test]
    fn a_direct_span_under_an_unsampled_one_only_carries_the_trace_on() {
        let mut seen = None;
        exported_by(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), || {
            let handler = tracing::info_span!("handler");
            let started = handler.in_scope(client_call).unwrap();
            seen = Some((context_of(&handler).unwrap(), started));
        });
        let (handler, started) = seen.unwrap();
        assert!(started.recording.is_none());
        assert_eq!(started.context.trace_id, handler.trace_id);
        assert!(!started.context.sampled);
    }

    #[test]
    fn a_request_span_adopts_spans_and_warnings_made_while_it_is_current() {
        use super::super::request::{RequestSpan, in_request};
        let remote = SpanContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let mut server = None;
        let spans = exported_by(Sampler::AlwaysOn, || {
            let started = start_direct(
                Parent::Remote(remote),
                SpanKind::Server,
                || "POST /api/postings".into(),
                None,
                &[("http.route", "/api/postings")],
            )
            .unwrap();
            let request = Arc::new(RequestSpan::new(started.context, started.recording));
            // A span for log lines only, as every request has: not exported.
            let lines = tracing::info_span!(target: super::super::trace::REQUEST_LINES, "request");
            in_request(&request, || {
                lines.in_scope(|| {
                    tracing::info_span!("db insert").in_scope(|| {});
                    tracing::error!(parent: &lines, "the database is gone");
                    assert_eq!(current_context(), Some(request.context));
                });
            });
            assert_eq!(current_context(), None, "current only inside");
            server = Some(request.context);
            drop(request);
        });
        let server = server.unwrap();
        assert_eq!(spans.len(), 2, "{spans:?}");
        let (db, request) = (&spans[0], &spans[1]);
        assert_eq!(request.context, server);
        assert_eq!(request.kind, SpanKind::Server);
        assert_eq!(request.context.trace_id, remote.unwrap().trace_id);
        assert_eq!(request.parent_span_id, remote.unwrap().span_id);
        assert!(request.parent_is_remote);
        assert_eq!(db.parent_span_id, server.span_id);
        assert_eq!(db.context.trace_id, server.trace_id);
        assert_eq!(
            request.status,
            Status::Error("the database is gone".into()),
            "the error outside any exported span is the request's"
        );
        assert_eq!(request.events.len(), 1);
        assert!(request.end >= request.start);
    }

    #[test]
    fn an_unsampled_span_exports_nothing_but_carries_its_context() {
        let mut seen = None;
        let spans = exported_by(Sampler::AlwaysOff, || {
            let request = tracing::info_span!("request", otel.kind = "server");
            let context = context_of(&request).expect("an exported span has a context");
            let current = request.in_scope(current_context).expect("current context");
            seen = Some((context.sampled, context.trace_id != 0, current == context));
        });
        assert!(spans.is_empty());
        assert_eq!(seen, Some((false, true, true)));
    }
}
