//! The layer that exports `tracing` spans as OpenTelemetry spans.
//!
//! Each exported `tracing` span starts its OpenTelemetry span when it is
//! created, so the sampler decides at once: an unsampled span formats none of
//! its fields and only carries its context on for propagation. Its fields
//! become attributes, except OpenTelemetry's special ones: `otel.name`
//! (the span's name), `otel.kind` (fixed at creation) and `otel.status_code`.
//! Events inside a span (warnings and errors, as the filter lets through)
//! become span events; an error marks the span failed. The span ends when the
//! `tracing` span closes. Entering and leaving a span cost nothing here: the
//! context is looked up from the span when a helper in [`super::trace`]
//! needs it.
//!
//! A span whose parent is in another process is made inside
//! [`with_remote_parent`], which hands the parent to the span being created.

use opentelemetry::trace::{SpanBuilder, SpanKind, SpanRef, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use std::cell::RefCell;
use std::fmt::Debug;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Turns `tracing` spans into OpenTelemetry spans through `tracer`.
pub(super) struct ExportLayer {
    tracer: opentelemetry_sdk::trace::Tracer,
}

impl ExportLayer {
    pub(super) fn new(tracer: opentelemetry_sdk::trace::Tracer) -> Self {
        Self { tracer }
    }
}

/// What is exported: info spans and up, and warnings and errors as span
/// events, whatever `RUST_LOG` says about log lines.
pub(super) fn exported()
-> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        let threshold = if meta.is_span() {
            tracing::Level::INFO
        } else {
            tracing::Level::WARN
        };
        *meta.level() <= threshold
    })
}

/// Kept in an exported span's extensions: the context whose active span is
/// its OpenTelemetry span.
struct Exported(Context);

thread_local! {
    /// The remote parent of the span being created, set by
    /// [`with_remote_parent`].
    static REMOTE_PARENT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `make` (which creates one span) so that the span it creates, if
/// exported, is a child of `parent`, a context from another process.
pub(super) fn with_remote_parent<T>(parent: Context, make: impl FnOnce() -> T) -> T {
    REMOTE_PARENT.with(|slot| *slot.borrow_mut() = Some(parent));
    let made = make();
    // Left unused when the span was not exported (a debug span, say).
    REMOTE_PARENT.with(|slot| slot.borrow_mut().take());
    made
}

/// The context of the nearest exported span among `id` and its ancestors.
fn context_in(registry: &Registry, id: &Id) -> Option<Context> {
    registry.span(id)?.scope().find_map(|span| {
        span.extensions()
            .get::<Exported>()
            .map(|exported| exported.0.clone())
    })
}

/// The context of `span`, or of its nearest exported ancestor.
pub(super) fn context_of(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| context_in(dispatch.downcast_ref::<Registry>()?, id))
        .flatten()
}

/// The context of the current span, or of its nearest exported ancestor.
pub(super) fn current_context() -> Option<Context> {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let current = tracing::Subscriber::current_span(registry);
        context_in(registry, current.id()?)
    })
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
            .with(|slot| slot.borrow_mut().take())
            .or_else(|| {
                // The nearest ancestor this layer sees, i.e. an exported one.
                span.parent().and_then(|parent| {
                    parent
                        .extensions()
                        .get::<Exported>()
                        .map(|exported| exported.0.clone())
                })
            })
            .unwrap_or_default();
        let mut kind = KindField(SpanKind::Internal);
        attrs.record(&mut kind);
        let builder = SpanBuilder {
            name: attrs.metadata().name().into(),
            span_kind: Some(kind.0),
            ..SpanBuilder::default()
        };
        let context = parent.with_span(self.tracer.build_with_context(builder, &parent));
        let otel = context.span();
        if otel.is_recording() {
            let mut fields = FieldRecorder::new(&otel);
            attrs.record(&mut fields);
            fields.flush();
        }
        span.extensions_mut().insert(Exported(context));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let extensions = span.extensions();
        if let Some(Exported(context)) = extensions.get::<Exported>() {
            let otel = context.span();
            if otel.is_recording() {
                let mut fields = FieldRecorder::new(&otel);
                values.record(&mut fields);
                fields.flush();
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let Some(context) = span.scope().find_map(|span| {
            span.extensions()
                .get::<Exported>()
                .map(|exported| exported.0.clone())
        }) else {
            return;
        };
        let otel = context.span();
        if !otel.is_recording() {
            return;
        }
        let level = *event.metadata().level();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        fields
            .attributes
            .push(KeyValue::new("level", level.as_str()));
        if level == tracing::Level::ERROR {
            otel.set_status(Status::error(fields.message.clone()));
        }
        otel.add_event(fields.message, fields.attributes);
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let exported = span.extensions_mut().remove::<Exported>();
        if let Some(Exported(context)) = exported {
            context.span().end();
        }
    }
}

/// Reads just `otel.kind`, which must be known before the span starts.
struct KindField(SpanKind);

impl Visit for KindField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "otel.kind" {
            self.0 = span_kind(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "otel.kind" {
            self.0 = span_kind(&format!("{value:?}"));
        }
    }
}

fn span_kind(name: &str) -> SpanKind {
    match name.trim_matches('"') {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

/// Writes a span's fields onto its recording OpenTelemetry span: the
/// attributes in one go when [`flush`](Self::flush)ed, since each write
/// locks the span.
struct FieldRecorder<'a, 'c> {
    span: &'a SpanRef<'c>,
    attributes: Vec<KeyValue>,
}

impl<'a, 'c> FieldRecorder<'a, 'c> {
    fn new(span: &'a SpanRef<'c>) -> Self {
        Self {
            span,
            attributes: Vec::new(),
        }
    }

    fn set(&mut self, field: &Field, value: Value) {
        match field.name() {
            "otel.name" => self.span.update_name(value.as_str().into_owned()),
            "otel.kind" => {}
            "otel.status_code" => match value.as_str().as_ref() {
                "error" | "ERROR" => self.span.set_status(Status::error("")),
                "ok" | "OK" => self.span.set_status(Status::Ok),
                _ => {}
            },
            name => self.attributes.push(KeyValue::new(name, value)),
        }
    }

    fn flush(self) {
        if !self.attributes.is_empty() {
            self.span.set_attributes(self.attributes);
        }
    }
}

impl Visit for FieldRecorder<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(
            field,
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::I64),
        );
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

/// An event's message (its name as a span event) and its other fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.attributes.push(KeyValue::new(field.name(), text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Keeps what it is given.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Runs `work` with only the export layer installed, over a tracer that
    /// samples as `sampler` says; returns what was exported.
    fn exported_by(sampler: Sampler, work: impl FnOnce()) -> Vec<SpanData> {
        let collect = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(collect.clone())
            .with_sampler(sampler)
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(ExportLayer::new(provider.tracer("test")).with_filter(exported()));
        tracing::subscriber::with_default(subscriber, work);
        collect.0.lock().unwrap().clone()
    }

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
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
        assert_eq!(request.span_kind, SpanKind::Server);
        assert_eq!(request.parent_span_id, SpanId::INVALID);
        assert!(matches!(request.status, Status::Error { .. }));
        assert_eq!(
            attribute(request, "http.route"),
            Some(&Value::from("/api/postings"))
        );
        assert_eq!(
            attribute(request, "http.response.status_code"),
            Some(&Value::I64(503))
        );
        assert!(attribute(request, "otel.name").is_none());

        assert_eq!(db.name, "db insert");
        assert_eq!(db.span_kind, SpanKind::Internal);
        assert_eq!(db.span_context.trace_id(), request.span_context.trace_id());
        assert_eq!(db.parent_span_id, request.span_context.span_id());
        assert_eq!(attribute(db, "rows"), Some(&Value::I64(3)));
        let event = db.events.iter().next().expect("the warning is an event");
        assert_eq!(event.name, "slow statement");
        assert!(event.attributes.contains(&KeyValue::new("level", "WARN")));
        assert!(
            event
                .attributes
                .contains(&KeyValue::new("table", "postings"))
        );
    }

    #[test]
    fn a_remote_parent_is_given_to_the_span_made_for_it() {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let parent_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let remote =
            Context::new().with_remote_span_context(opentelemetry::trace::SpanContext::new(
                trace_id,
                parent_id,
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                Default::default(),
            ));
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
        assert_eq!(spans[0].span_context.trace_id(), trace_id);
        assert_eq!(spans[0].parent_span_id, parent_id);
        assert!(spans[0].parent_span_is_remote);
        assert_eq!(spans[0].span_kind, SpanKind::Consumer);
    }

    #[test]
    fn an_unsampled_span_exports_nothing_but_carries_its_context() {
        let mut seen = None;
        let spans = exported_by(Sampler::AlwaysOff, || {
            let request = tracing::info_span!("request", otel.kind = "server");
            let context = context_of(&request).expect("an exported span has a context");
            let current = request.in_scope(current_context).expect("current context");
            seen = Some((
                context.span().is_recording(),
                context.span().span_context().is_valid(),
                current.span().span_context().span_id() == context.span().span_context().span_id(),
            ));
        });
        assert!(spans.is_empty());
        assert_eq!(seen, Some((false, true, true)));
    }
}
