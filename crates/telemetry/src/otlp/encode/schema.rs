//! Export requests decoded by opentelemetry-proto's generated messages: the
//! protocol's own schema read by prost, rather than our reading of the wire
//! format in `super::tests`. Requests are made as the exporter makes them
//! for `http/protobuf`: spans encoded into the queue as they end, the head
//! written into the room left before them (or, without room, copied behind
//! it), and also from whole records.

use super::super::batch::{Batcher, Form};
use super::super::context::SpanContext;
use super::super::record::{SharedAttributes, SpanEvent, SpanKind, SpanRecord, Status, Value};
use super::{Origin, protobuf, request_head_room};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, SpanFlags, Status as SpanStatus, span, status,
};
use proptest::prelude::*;
use prost::Message;
use std::sync::Arc;

/// The export requests the exporter sends for `spans`, at most `max_batch`
/// to a request, with the head room the pipeline leaves (`room`) or none.
fn exported(origin: &Origin, spans: &[SpanRecord], max_batch: usize, room: bool) -> Vec<Vec<u8>> {
    let head_room = if room { request_head_room(origin) } else { 0 };
    let batcher = Arc::new(Batcher::new(
        spans.len(),
        max_batch,
        Form::Encoded { head_room },
    ));
    for span in spans {
        batcher.push(span.clone());
    }
    batcher
        .take_protobuf_requests(origin)
        .iter()
        .map(|request| request.to_vec())
        .collect()
}

fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(bytes).expect("an ExportTraceServiceRequest")
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::Str(text) => any_value::Value::StringValue(text.clone()),
        Value::Bool(flag) => any_value::Value::BoolValue(*flag),
        Value::I64(number) => any_value::Value::IntValue(*number),
        Value::F64(number) => any_value::Value::DoubleValue(*number),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

/// `record` as the schema's `Span`, every field spelled out.
fn span_message(record: &SpanRecord) -> Span {
    let kind = match record.kind {
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    };
    // Unset is the absent status.
    let status = match &record.status {
        Status::Unset => None,
        Status::Ok => Some(SpanStatus {
            message: String::new(),
            code: status::StatusCode::Ok as i32,
        }),
        Status::Error(message) => Some(SpanStatus {
            message: message.clone(),
            code: status::StatusCode::Error as i32,
        }),
    };
    let remote = if record.parent_is_remote {
        SpanFlags::ContextIsRemoteMask as u32
    } else {
        0
    };
    let attributes = |list: &[(&'static str, Value)]| -> Vec<KeyValue> {
        list.iter()
            .map(|(key, value)| key_value(key, value))
            .collect()
    };
    // The shared attributes come before the span's own.
    let mut all = record
        .shared
        .as_ref()
        .map_or_else(Vec::new, |shared| attributes(shared.list()));
    all.extend(attributes(&record.attributes));
    Span {
        trace_id: record.context.trace_id.to_be_bytes().to_vec(),
        span_id: record.context.span_id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: if record.parent_span_id == 0 {
            Vec::new()
        } else {
            record.parent_span_id.to_be_bytes().to_vec()
        },
        flags: u32::from(record.context.sampled)
            | SpanFlags::ContextHasIsRemoteMask as u32
            | remote,
        name: record.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: record.start,
        end_time_unix_nano: record.end,
        attributes: all,
        dropped_attributes_count: 0,
        events: record
            .events
            .iter()
            .map(|event| span::Event {
                time_unix_nano: event.time,
                name: event.name.clone(),
                attributes: attributes(&event.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status,
    }
}

/// One request holding `spans` from `origin`, as the schema's message.
fn request_message(origin: &Origin, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: origin
                    .resource
                    .iter()
                    .map(|(key, value)| key_value(key, value))
                    .collect(),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: origin.scope.to_owned(),
                    version: origin.scope_version.to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans: spans.iter().map(span_message).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Asserts that `bytes` decode to `expected`. Both are compared in prost's
/// own encoding, so that doubles compare bit for bit (NaN, -0.0); a
/// difference is shown field by field.
fn assert_decodes_to(bytes: &[u8], expected: &ExportTraceServiceRequest) {
    let decoded = decode(bytes);
    if decoded.encode_to_vec() != expected.encode_to_vec() {
        assert_eq!(&decoded, expected);
        panic!("a double differs in its bits: {decoded:?}");
    }
}

/// Text up to a few hundred bytes: empty, ASCII around the short cuts'
/// limits, any Unicode, and over 127 bytes, so that its length takes two
/// varint bytes.
fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        4 => "(?s).{0,40}",
        2 => "[a-z./_]{0,130}",
        1 => ("(?s).{1,3}", 128..200_usize).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

/// Text as spans carry it: also over 16383 bytes, so that its length, and
/// those of the messages around it, take three varint bytes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => short_text(),
        1 => ("(?s).{1,3}", 16_384..16_600_usize).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

/// A key: records hold `&'static str` keys, so generated ones are leaked,
/// and kept short for that.
fn key() -> impl Strategy<Value = &'static str> {
    short_text().prop_map(|key| &*key.leak())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::Str),
        any::<bool>().prop_map(Value::Bool),
        // Numbers with a one- or two-byte varint take a short cut.
        prop_oneof![any::<i64>(), 0..0x4000_i64, -2..2_i64].prop_map(Value::I64),
        any::<f64>().prop_map(Value::F64),
    ]
}

/// A string attribute about as long as the short cut for strings allows:
/// its `KeyValue` just under or just over 127 bytes.
fn attribute_at_the_limit() -> impl Strategy<Value = (&'static str, Value)> {
    (0..=0x70_usize, 118..=126_usize).prop_map(|(key_len, total)| {
        let key_len = key_len.min(total);
        let key: &'static str = "k".repeat(key_len).leak();
        (key, Value::Str("v".repeat(total - key_len)))
    })
}

fn attributes() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let attribute = prop_oneof![4 => (key(), value()), 1 => attribute_at_the_limit()];
    prop::collection::vec(attribute, 0..5)
}

fn shared() -> impl Strategy<Value = Option<SharedAttributes>> {
    prop::option::of(prop::collection::vec((key(), text()), 0..3)).prop_map(|list| {
        list.map(|list| {
            let list: Vec<(&'static str, &str)> = list
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .collect();
            SharedAttributes::new(&list)
        })
    })
}

fn event() -> impl Strategy<Value = SpanEvent> {
    (any::<u64>(), text(), attributes()).prop_map(|(time, name, attributes)| SpanEvent {
        time,
        name,
        attributes,
    })
}

fn span_record() -> impl Strategy<Value = SpanRecord> {
    let context = (any::<u128>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
        |(trace_id, span_id, sampled, remote)| SpanContext {
            trace_id,
            span_id,
            sampled,
            remote,
        },
    );
    // Zero is no parent.
    let parent = (prop_oneof![Just(0), any::<u64>()], any::<bool>());
    let kind = prop::sample::select(vec![
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ]);
    let status = prop_oneof![
        Just(Status::Unset),
        Just(Status::Ok),
        text().prop_map(Status::Error),
    ];
    (
        (context, parent, text(), kind, any::<u64>(), any::<u64>()),
        (
            shared(),
            attributes(),
            prop::collection::vec(event(), 0..3),
            status,
        ),
    )
        .prop_map(
            |(
                (context, (parent_span_id, parent_is_remote), name, kind, start, end),
                (shared, attributes, events, status),
            )| SpanRecord {
                context,
                parent_span_id,
                parent_is_remote,
                name: name.into(),
                kind,
                start,
                end,
                shared,
                attributes,
                events,
                status,
            },
        )
}

fn origin() -> impl Strategy<Value = Origin> {
    (
        text(),
        prop::collection::vec((text(), value()), 0..4),
        // Leaked, as the scope's are `&'static str`.
        short_text(),
        short_text(),
    )
        .prop_map(|(service, others, scope, version)| {
            let mut resource = vec![("service.name".to_owned(), Value::Str(service))];
            resource.extend(others);
            Origin {
                resource,
                scope: scope.leak(),
                scope_version: version.leak(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn export_requests_decode_to_the_spans_queued(
        origin in origin(),
        spans in prop::collection::vec(span_record(), 1..6),
        max_batch in 1..4_usize,
        room in any::<bool>(),
    ) {
        let requests = exported(&origin, &spans, max_batch, room);
        let batches: Vec<&[SpanRecord]> = spans.chunks(max_batch).collect();
        prop_assert_eq!(requests.len(), batches.len());
        for (request, batch) in requests.iter().zip(batches) {
            assert_decodes_to(request, &request_message(&origin, batch));
        }
        assert_decodes_to(&protobuf(&origin, &spans), &request_message(&origin, &spans));
    }
}

#[test]
fn a_small_batch_decodes_field_by_field() {
    let origin = Origin {
        resource: vec![
            ("service.name".into(), Value::Str("gateway".into())),
            (
                "service.instance.id".into(),
                Value::Str("gateway-1a2b3c4d".into()),
            ),
        ],
        scope: "dure",
        scope_version: "0.1.0",
    };
    let server = SpanRecord {
        context: SpanContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: true,
            remote: false,
        },
        parent_span_id: 0x1122334455667788,
        parent_is_remote: true,
        name: "GET /api/user".into(),
        kind: SpanKind::Server,
        start: 1_700_000_000_000_000_000,
        end: 1_700_000_000_000_250_000,
        shared: Some(SharedAttributes::new(&[("peer.service", "identity")])),
        attributes: vec![
            ("http.route", Value::Str("/api/user".into())),
            ("http.response.status_code", Value::I64(503)),
            ("retry", Value::Bool(true)),
            ("ratio", Value::F64(f64::NAN)),
            ("negative", Value::I64(-1)),
        ],
        events: vec![SpanEvent {
            time: 1_700_000_000_000_100_000,
            name: "slow".into(),
            attributes: vec![("level", Value::Str("WARN".into()))],
        }],
        status: Status::Error("boom".into()),
    };
    let root = SpanRecord {
        context: SpanContext {
            span_id: 0x0102030405060708,
            ..server.context
        },
        parent_span_id: 0,
        parent_is_remote: false,
        name: "consume comment.added".into(),
        kind: SpanKind::Consumer,
        shared: None,
        attributes: Vec::new(),
        events: Vec::new(),
        status: Status::Ok,
        ..server.clone()
    };
    let requests = exported(&origin, &[server, root], 2, true);
    assert_eq!(requests.len(), 1);
    let request = decode(&requests[0]);

    assert_eq!(request.resource_spans.len(), 1);
    let resource_spans = &request.resource_spans[0];
    let resource = resource_spans.resource.as_ref().expect("a resource");
    assert_eq!(resource.attributes[0].key, "service.name");
    assert_eq!(
        resource.attributes[0].value.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("gateway".into()))
    );
    assert_eq!(resource.attributes[1].key, "service.instance.id");
    let scope_spans = &resource_spans.scope_spans[0];
    let scope = scope_spans.scope.as_ref().expect("a scope");
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("dure", "0.1.0")
    );
    assert_eq!(scope_spans.spans.len(), 2);

    let span = &scope_spans.spans[0];
    assert_eq!(
        hex(&span.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "ids are big-endian bytes"
    );
    assert_eq!(hex(&span.span_id), "00f067aa0ba902b7");
    assert_eq!(hex(&span.parent_span_id), "1122334455667788");
    assert_eq!(span.name, "GET /api/user");
    assert_eq!(span.kind(), span::SpanKind::Server);
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_700_000_000_000_250_000);
    assert_eq!(
        span.flags, 0x301,
        "sampled, with a parent known to be remote"
    );
    let attributes: Vec<(&str, &any_value::Value)> = span
        .attributes
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                kv.value.as_ref().unwrap().value.as_ref().unwrap(),
            )
        })
        .collect();
    let keys: Vec<&str> = attributes.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        [
            "peer.service",
            "http.route",
            "http.response.status_code",
            "retry",
            "ratio",
            "negative"
        ],
        "shared attributes first"
    );
    use any_value::Value::{BoolValue, DoubleValue, IntValue, StringValue};
    assert_eq!(attributes[0].1, &StringValue("identity".into()));
    assert_eq!(attributes[1].1, &StringValue("/api/user".into()));
    assert_eq!(attributes[2].1, &IntValue(503));
    assert_eq!(attributes[3].1, &BoolValue(true));
    let DoubleValue(ratio) = attributes[4].1 else {
        panic!("ratio is a double: {:?}", attributes[4]);
    };
    assert_eq!(ratio.to_bits(), f64::NAN.to_bits());
    assert_eq!(attributes[5].1, &IntValue(-1));
    assert_eq!(span.events.len(), 1);
    assert_eq!(span.events[0].time_unix_nano, 1_700_000_000_000_100_000);
    assert_eq!(span.events[0].name, "slow");
    assert_eq!(span.events[0].attributes[0].key, "level");
    let status = span.status.as_ref().expect("a status");
    assert_eq!(
        (status.code(), status.message.as_str()),
        (status::StatusCode::Error, "boom")
    );

    let root = &scope_spans.spans[1];
    assert!(root.parent_span_id.is_empty(), "a root has no parent");
    assert_eq!(root.kind(), span::SpanKind::Consumer);
    assert_eq!(root.flags, 0x101);
    assert!(root.attributes.is_empty() && root.events.is_empty());
    assert_eq!(
        root.status.as_ref().map(SpanStatus::code),
        Some(status::StatusCode::Ok)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
