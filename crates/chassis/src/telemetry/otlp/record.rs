//! A finished span, as it is queued for export.

use super::context::SpanContext;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// OTLP's span kinds (the numbers are the protocol's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// From the `otel.kind` field's text; anything unknown is internal.
    pub fn from_name(name: &str) -> Self {
        match name.trim_matches('"') {
            "server" => Self::Server,
            "client" => Self::Client,
            "producer" => Self::Producer,
            "consumer" => Self::Consumer,
            _ => Self::Internal,
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    I64(i64),
    F64(f64),
}

/// A span's outcome; unset unless something said otherwise.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Status {
    #[default]
    Unset,
    Ok,
    Error(String),
}

/// Something that happened inside a span (a warning or error log line).
#[derive(Debug, Clone)]
pub struct SpanEvent {
    pub time: u64,
    pub name: String,
    pub attributes: Vec<(&'static str, Value)>,
}

/// One span: made when the span starts, completed when it ends.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub context: SpanContext,
    /// Zero for a root span.
    pub parent_span_id: u64,
    pub parent_is_remote: bool,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<(&'static str, Value)>,
    pub events: Vec<SpanEvent>,
    pub status: Status,
}

#[cfg(test)]
impl SpanRecord {
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value)
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}
