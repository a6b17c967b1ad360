//! Logs, traces and metrics for a dure process.
//!
//! Logs go to stderr through `tracing`: readable lines on a terminal, one JSON
//! object per line otherwise (for `dure up`'s collector and log shippers),
//! carrying `trace_id` and `span_id` when traces are exported. `RUST_LOG`
//! chooses what is shown (default `info`). Traces are exported over
//! OTLP/HTTP by our own exporter, without an OpenTelemetry SDK, and
//! `traceparent` is carried across processes. Metrics go to a process-wide
//! Prometheus recorder rendered by `/metrics`.
//!
//! # Layout
//! - the crate root: the log subscriber ([`init`], [`LogFormat`]), the
//!   process's resource, and the Prometheus recorder ([`prometheus`]).
//! - [`trace`]: starting export, `traceparent` in and out, and the server
//!   and client spans recorded straight into the export queue.
//! - `spans`: the layer that records `tracing` spans for export.
//! - `request`: the request whose server span is recorded directly
//!   (decision record 8) and is current while the request is polled.
//! - `otlp`: the export itself: span identity, sampling, the span record,
//!   the `OTEL_*` settings, the OTLP encoding and the batch queue.

#![forbid(unsafe_code)]

mod otlp;
mod request;
mod spans;
pub mod trace;

pub use trace::{ServiceResource, Tracing};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("one of auto, text, json".into()),
        }
    }
}

/// Installs the global log subscriber, without trace export. Safe to call
/// more than once (tests); only the first call has an effect.
pub fn init_logging(format: LogFormat) {
    install(format, None);
}

/// Logging, plus trace export for `resource` when the environment asks for
/// it (see [`trace`]). Keep the returned pipeline and shut it down after the
/// service stopped, so the last spans are flushed. A malformed `OTEL_*`
/// setting is an error naming it.
pub fn init(format: LogFormat, resource: &ServiceResource) -> anyhow::Result<Option<Tracing>> {
    if !trace::export_requested() {
        install(format, None);
        return Ok(None);
    }
    let (tracing, pipeline) = trace::pipeline(resource)
        .map_err(|err| anyhow::anyhow!("cannot export traces as the OTEL_* settings say: {err}"))?;
    install(format, Some(pipeline));
    Ok(Some(tracing))
}

fn install(format: LogFormat, pipeline: Option<otlp::Pipeline>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let lines = if json {
        lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .map_event_format(WithTraceIds)
            .boxed()
    } else {
        lines.compact().boxed()
    };
    // `RUST_LOG` chooses log lines only: quiet logs must not silence traces.
    // Exported are info spans, and warnings and errors as span events.
    let spans =
        pipeline.map(|pipeline| spans::ExportLayer::new(pipeline).with_filter(spans::exported()));
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init();
}

/// The JSON line format with `trace_id` and `span_id` added when the event
/// happened inside an exported span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = trace::event_ids(event) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON format writes one object and a newline: add two members.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

static INSTANCE_ID: OnceLock<String> = OnceLock::new();

/// The resource of a process running `service`: its name, the workspace
/// version, and an instance id (`<service>-<8 hex>`) made here once, which
/// the registry registration then uses too.
pub fn resource(service: &str) -> ServiceResource {
    let instance_id = INSTANCE_ID
        .get_or_init(|| {
            format!(
                "{service}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
        })
        .clone();
    ServiceResource {
        name: service.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        instance_id,
    }
}

/// The instance id [`resource`] made for this process's `service`, if any
/// (tests run several services in one process and make none).
pub fn instance_id(service: &str) -> Option<String> {
    INSTANCE_ID
        .get()
        .filter(|id| {
            id.strip_prefix(service)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .cloned()
}

/// For tests: logs only when `TEST_LOG` is set, so test output stays quiet.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        init_logging(LogFormat::Text);
    }
}

/// Seconds buckets for request durations: 1 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("the bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        // Histograms are kept as raw samples until upkeep folds them in.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("a thread can be spawned at start");
        handle
    })
}

/// Records the process's resident memory and CPU time, read from /proc
/// (Linux); called before each `/metrics` render. Elsewhere it records
/// nothing.
pub fn record_process_metrics() {
    const PAGE: f64 = 4096.0;
    const TICKS_PER_SECOND: f64 = 100.0;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(resident) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(resident * PAGE);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces) start at ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        // utime and stime are fields 14 and 15: indices 11 and 12 after the `)`.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        metrics::gauge!("process_cpu_seconds_total")
            .set((ticks(11) + ticks(12)) / TICKS_PER_SECOND);
    }
}
