//! The console's trace receiver and store: every process of `dure up`
//! exports its spans here (OTLP/HTTP, protobuf or JSON, `POST /v1/traces`),
//! and the console keeps the most recent traces, bounded, to list them and
//! draw one across processes, event hops included.
//!
//! Only the fields the console shows are decoded (protobuf ignores the
//! rest): the messages below follow `opentelemetry/proto/trace/v1` and
//! `common/v1` field for field.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The OTLP messages, as far as the console reads them.
pub mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(int32, tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Any", tags = "1, 2, 3, 4")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Any {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
    }
}

/// One span as the console keeps it: text in boxes, the attributes as
/// JSON text (a fraction of a map's memory), the service's name shared.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpan {
    pub trace_id: Box<str>,
    pub span_id: Box<str>,
    pub parent_span_id: Option<Box<str>>,
    pub service: Arc<str>,
    pub name: Box<str>,
    pub kind: &'static str,
    /// Unix nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub request_id: Option<Box<str>>,
    pub attributes: Box<str>,
}

/// A trace in the list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The root span's name, e.g. `GET /api/postings`.
    pub root: String,
    pub start: String,
    pub duration_ms: f64,
    /// In the order they joined the trace.
    pub services: Vec<String>,
    pub spans: usize,
    pub error: bool,
}

/// A span of one trace, placed in time for the waterfall.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedSpan {
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub error: bool,
    pub attributes: Map<String, Value>,
    /// RFC 3339.
    pub start: String,
    /// From the trace's first span.
    pub offset_ms: f64,
    pub duration_ms: f64,
    /// Depth under the root, for indenting.
    pub depth: usize,
}

/// What a list asks for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub request_id: Option<String>,
    pub limit: Option<usize>,
}

/// A calls-or-events edge between two services, seen in traces.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `call` (client → server) or `event` (producer → consumer, or a feed).
    pub kind: &'static str,
    pub count: usize,
}

/// The most recent traces, at most `capacity`, each at most
/// [`SPANS_PER_TRACE`] spans.
#[derive(Debug)]
pub struct TraceStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<Box<str>, Vec<StoredSpan>>,
    /// Oldest first.
    order: VecDeque<Box<str>>,
    /// Each service's name once.
    names: HashMap<String, Arc<str>>,
}

pub const SPANS_PER_TRACE: usize = 1000;

impl TraceStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the spans of one export request.
    pub fn add(&self, request: &otlp::ExportTraceServiceRequest) {
        let mut inner = self.lock();
        for resource in &request.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(otlp::Any::String(name)) => Some(name.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_else(|| "unknown".into());
            let service = inner
                .names
                .entry(service.clone())
                .or_insert_with(|| Arc::from(service.as_str()))
                .clone();
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                let stored = stored(&service, span);
                if !inner.traces.contains_key(&stored.trace_id) {
                    inner.order.push_back(stored.trace_id.clone());
                    while inner.order.len() > self.capacity {
                        if let Some(oldest) = inner.order.pop_front() {
                            inner.traces.remove(&oldest);
                        }
                    }
                }
                let spans = inner.traces.entry(stored.trace_id.clone()).or_default();
                if spans.len() < SPANS_PER_TRACE {
                    spans.push(stored);
                }
            }
        }
    }

    /// The newest traces that match, newest first.
    pub fn list(&self, query: &TraceQuery) -> Vec<TraceSummary> {
        let limit = query.limit.unwrap_or(50).clamp(1, 500);
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.traces.get(id))
            .filter(|spans| {
                query
                    .service
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .is_none_or(|service| spans.iter().any(|s| &*s.service == service))
            })
            .filter(|spans| {
                query
                    .request_id
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .is_none_or(|id| spans.iter().any(|s| s.request_id.as_deref() == Some(id)))
            })
            .take(limit)
            .map(|spans| summary(spans))
            .collect()
    }

    /// One trace's spans, in time order, placed for the waterfall.
    pub fn trace(&self, trace_id: &str) -> Option<Vec<PlacedSpan>> {
        let spans = self.lock().traces.get(trace_id)?.clone();
        let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let mut order: Vec<&StoredSpan> = spans.iter().collect();
        order.sort_by_key(|s| (s.start_ns, depth(&spans, s)));
        let placed = order
            .into_iter()
            .map(|span| PlacedSpan {
                span_id: span.span_id.to_string(),
                parent_span_id: span.parent_span_id.as_deref().map(str::to_owned),
                service: span.service.to_string(),
                name: span.name.to_string(),
                kind: span.kind,
                error: span.error,
                attributes: serde_json::from_str(&span.attributes).unwrap_or_default(),
                start: rfc3339(span.start_ns),
                offset_ms: span.start_ns.saturating_sub(start) as f64 / 1e6,
                duration_ms: span.end_ns.saturating_sub(span.start_ns) as f64 / 1e6,
                depth: depth(&spans, span),
            })
            .collect();
        Some(placed)
    }

    /// The edges between services seen in the kept traces.
    pub fn edges(&self) -> Vec<Edge> {
        let inner = self.lock();
        let mut counts: HashMap<(String, String, &'static str), usize> = HashMap::new();
        for spans in inner.traces.values() {
            let by_id: HashMap<&str, &StoredSpan> =
                spans.iter().map(|s| (&*s.span_id, s)).collect();
            for span in spans {
                let Some(parent) = span.parent_span_id.as_deref().and_then(|p| by_id.get(p)) else {
                    continue;
                };
                if parent.service != span.service {
                    let kind = if span.kind == "consumer" || parent.kind == "producer" {
                        "event"
                    } else {
                        "call"
                    };
                    *counts
                        .entry((parent.service.to_string(), span.service.to_string(), kind))
                        .or_default() += 1;
                }
            }
        }
        let mut edges: Vec<Edge> = counts
            .into_iter()
            .map(|((from, to, kind), count)| Edge {
                from,
                to,
                kind,
                count,
            })
            .collect();
        edges.sort_by(|a, b| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind)));
        edges
    }

    /// How many traces are kept now.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stored(service: &Arc<str>, span: &otlp::Span) -> StoredSpan {
    let attributes: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(otlp::Any::String(s)) => Value::from(s.as_str()),
                Some(otlp::Any::Bool(b)) => Value::from(*b),
                Some(otlp::Any::Int(i)) => Value::from(*i),
                Some(otlp::Any::Double(d)) => Value::from(*d),
                None => Value::Null,
            };
            (kv.key.clone(), value)
        })
        .collect();
    let server_error = attributes
        .get("http.response.status_code")
        .and_then(Value::as_i64)
        .is_some_and(|status| status >= 500);
    let request_id = attributes
        .get("request_id")
        .and_then(Value::as_str)
        .map(Into::into);
    StoredSpan {
        trace_id: hex(&span.trace_id).into(),
        span_id: hex(&span.span_id).into(),
        parent_span_id: (!span.parent_span_id.is_empty()
            && span.parent_span_id.iter().any(|b| *b != 0))
        .then(|| hex(&span.parent_span_id).into()),
        service: service.clone(),
        name: span.name.as_str().into(),
        kind: match span.kind {
            2 => "server",
            3 => "client",
            4 => "producer",
            5 => "consumer",
            _ => "internal",
        },
        start_ns: span.start_time_unix_nano,
        end_ns: span.end_time_unix_nano.max(span.start_time_unix_nano),
        // Status code 2 is ERROR.
        error: span.status.as_ref().is_some_and(|s| s.code == 2) || server_error,
        request_id,
        attributes: Value::Object(attributes).to_string().into(),
    }
}

fn summary(spans: &[StoredSpan]) -> TraceSummary {
    let ids: Vec<&str> = spans.iter().map(|s| &*s.span_id).collect();
    let root = spans
        .iter()
        .filter(|s| {
            s.parent_span_id
                .as_deref()
                .is_none_or(|p| !ids.contains(&p))
        })
        .min_by_key(|s| s.start_ns);
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    let mut services: Vec<String> = Vec::new();
    let mut by_start: Vec<&StoredSpan> = spans.iter().collect();
    by_start.sort_by_key(|s| s.start_ns);
    for span in by_start {
        if !services.iter().any(|s| **s == *span.service) {
            services.push(span.service.to_string());
        }
    }
    TraceSummary {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        root: root.map(|r| r.name.to_string()).unwrap_or_default(),
        start: rfc3339(start),
        duration_ms: (end - start) as f64 / 1e6,
        services,
        spans: spans.len(),
        error: spans.iter().any(|s| s.error),
    }
}

fn depth(spans: &[StoredSpan], span: &StoredSpan) -> usize {
    let mut depth = 0;
    let mut parent = span.parent_span_id.as_deref();
    while let Some(id) = parent {
        match spans.iter().find(|s| &*s.span_id == id) {
            Some(found) if depth < 64 => {
                depth += 1;
                parent = found.parent_span_id.as_deref();
            }
            _ => break,
        }
    }
    depth
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(unix_ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Reads an OTLP/JSON export request (ids in hex, 64-bit numbers as
/// strings or numbers) into the same messages as protobuf.
pub fn from_json(body: &[u8]) -> Result<otlp::ExportTraceServiceRequest, String> {
    let request: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let number = |v: &Value| -> u64 {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let unhex = |v: &Value| -> Vec<u8> {
        let s = v.as_str().unwrap_or("");
        (0..s.len() / 2)
            .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    };
    let attributes = |v: &Value| -> Vec<otlp::KeyValue> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                let value = &kv["value"];
                let any = if let Some(s) = value.get("stringValue") {
                    Some(otlp::Any::String(text(s)))
                } else if let Some(b) = value.get("boolValue") {
                    Some(otlp::Any::Bool(b.as_bool().unwrap_or(false)))
                } else if let Some(i) = value.get("intValue") {
                    Some(otlp::Any::Int(
                        i.as_i64()
                            .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                            .unwrap_or(0),
                    ))
                } else {
                    value
                        .get("doubleValue")
                        .and_then(Value::as_f64)
                        .map(otlp::Any::Double)
                };
                otlp::KeyValue {
                    key: text(&kv["key"]),
                    value: Some(otlp::AnyValue { value: any }),
                }
            })
            .collect()
    };
    let resource_spans = request["resourceSpans"]
        .as_array()
        .ok_or("no resourceSpans")?
        .iter()
        .map(|rs| otlp::ResourceSpans {
            resource: Some(otlp::Resource {
                attributes: attributes(&rs["resource"]["attributes"]),
            }),
            scope_spans: rs["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|ss| otlp::ScopeSpans {
                    spans: ss["spans"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|span| otlp::Span {
                            trace_id: unhex(&span["traceId"]),
                            span_id: unhex(&span["spanId"]),
                            parent_span_id: unhex(&span["parentSpanId"]),
                            name: text(&span["name"]),
                            kind: i32::try_from(number(&span["kind"])).unwrap_or(0),
                            start_time_unix_nano: number(&span["startTimeUnixNano"]),
                            end_time_unix_nano: number(&span["endTimeUnixNano"]),
                            attributes: attributes(&span["attributes"]),
                            status: Some(otlp::Status {
                                message: text(&span["status"]["message"]),
                                code: i32::try_from(number(&span["status"]["code"])).unwrap_or(0),
                            }),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(otlp::ExportTraceServiceRequest { resource_spans })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn kv(key: &str, value: otlp::Any) -> otlp::KeyValue {
        otlp::KeyValue {
            key: key.into(),
            value: Some(otlp::AnyValue { value: Some(value) }),
        }
    }

    fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        name: &str,
        kind: i32,
        start: u64,
        end: u64,
    ) -> otlp::Span {
        otlp::Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![kv("request_id", otlp::Any::String(format!("r-{trace}")))],
            status: None,
        }
    }

    fn export(service: &str, spans: Vec<otlp::Span>) -> otlp::ExportTraceServiceRequest {
        otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(otlp::Resource {
                    attributes: vec![kv("service.name", otlp::Any::String(service.into()))],
                }),
                scope_spans: vec![otlp::ScopeSpans { spans }],
            }],
        }
    }

    #[test]
    fn a_trace_across_processes_is_summarised_and_placed() {
        let store = TraceStore::new(10);
        let t0 = 1_764_000_000_000_000_000;
        // Through protobuf, as the processes send it.
        let gateway = export(
            "gateway",
            vec![span(
                1,
                1,
                None,
                "POST /api/postings/{id}/comments",
                2,
                t0,
                t0 + 9_000_000,
            )],
        );
        let bytes = gateway.encode_to_vec();
        store.add(&otlp::ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap());
        store.add(&export(
            "posting",
            vec![
                span(
                    1,
                    2,
                    Some(1),
                    "POST /api/postings/{id}/comments",
                    2,
                    t0 + 1_000_000,
                    t0 + 8_000_000,
                ),
                span(
                    1,
                    3,
                    Some(2),
                    "publish comment.added",
                    4,
                    t0 + 7_000_000,
                    t0 + 7_500_000,
                ),
            ],
        ));
        store.add(&export(
            "notification",
            vec![span(
                1,
                4,
                Some(3),
                "consume comment.added",
                5,
                t0 + 20_000_000,
                t0 + 22_000_000,
            )],
        ));
        let list = store.list(&TraceQuery::default());
        assert_eq!(list.len(), 1);
        let trace = &list[0];
        assert_eq!(trace.root, "POST /api/postings/{id}/comments");
        assert_eq!(trace.services, ["gateway", "posting", "notification"]);
        assert_eq!(trace.spans, 4);
        assert!((trace.duration_ms - 22.0).abs() < 1e-9);
        let spans = store.trace(&trace.trace_id).unwrap();
        assert_eq!(
            spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!((spans[3].offset_ms - 20.0).abs() < 1e-9);
        assert_eq!(spans[1].parent_span_id.as_deref(), Some("0101010101010101"));
        assert_eq!(spans[0].attributes["request_id"], "r-1");
        let edges = store.edges();
        assert_eq!(
            edges,
            [
                Edge {
                    from: "gateway".into(),
                    to: "posting".into(),
                    kind: "call",
                    count: 1
                },
                Edge {
                    from: "posting".into(),
                    to: "notification".into(),
                    kind: "event",
                    count: 1
                },
            ]
        );
        assert_eq!(
            store
                .list(&TraceQuery {
                    request_id: Some("r-1".into()),
                    ..Default::default()
                })
                .len(),
            1
        );
        assert!(
            store
                .list(&TraceQuery {
                    service: Some("web".into()),
                    ..Default::default()
                })
                .is_empty()
        );
    }

    #[test]
    fn the_store_keeps_the_newest_traces() {
        let store = TraceStore::new(2);
        for trace in 1..=3 {
            store.add(&export(
                "a",
                vec![span(trace, 1, None, &format!("t{trace}"), 2, 1, 2)],
            ));
        }
        let roots: Vec<String> = store
            .list(&TraceQuery::default())
            .into_iter()
            .map(|t| t.root)
            .collect();
        assert_eq!(roots, ["t3", "t2"]);
        assert!(store.trace(&hex(&[1; 16])).is_none());
    }

    #[test]
    fn otlp_json_reads_as_protobuf_does() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
            "scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","spanId":"0b0b0b0b0b0b0b0b",
            "name":"GET /","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"3000000",
            "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}],"status":{"code":0}}]}]}]}"#;
        let store = TraceStore::new(5);
        store.add(&from_json(json.as_bytes()).unwrap());
        let list = store.list(&TraceQuery::default());
        assert_eq!(list[0].root, "GET /");
        assert_eq!(list[0].services, ["web"]);
        assert!(list[0].error, "a 5xx is an error");
        assert!(from_json(b"not json").is_err());
    }
}
