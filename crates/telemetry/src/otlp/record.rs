//! A finished span, as it is queued for export.

use super::context::SpanContext;
use std::borrow::Cow;
use std::sync::Arc;
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

/// Attributes that many spans carry alike (an upstream instance's), made
/// and encoded once and shared rather than copied into every record.
#[derive(Debug, Clone)]
pub struct SharedAttributes(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    list: Vec<(&'static str, Value)>,
    /// `list` as a span's attribute fields in protobuf.
    protobuf: Vec<u8>,
}

impl SharedAttributes {
    /// String attributes.
    pub fn new(attributes: &[(&'static str, &str)]) -> Self {
        let list: Vec<(&'static str, Value)> = attributes
            .iter()
            .map(|(key, value)| (*key, Value::Str((*value).to_owned())))
            .collect();
        let protobuf = super::encode::attribute_fields(&list);
        Self(Arc::new(Shared { list, protobuf }))
    }

    pub fn list(&self) -> &[(&'static str, Value)] {
        &self.0.list
    }

    pub fn protobuf(&self) -> &[u8] {
        &self.0.protobuf
    }
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
    /// Attributes shared with other spans; exported before `attributes`.
    pub shared: Option<SharedAttributes>,
    pub attributes: Vec<(&'static str, Value)>,
    pub events: Vec<SpanEvent>,
    pub status: Status,
}

impl SpanRecord {
    /// All its attributes: the shared ones, then its own.
    pub fn all_attributes(&self) -> impl Iterator<Item = &(&'static str, Value)> {
        self.shared
            .iter()
            .flat_map(SharedAttributes::list)
            .chain(&self.attributes)
    }

    #[cfg(test)]
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.all_attributes()
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
