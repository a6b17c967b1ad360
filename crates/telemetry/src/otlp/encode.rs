//! OTLP's `ExportTraceServiceRequest`, written straight from span records:
//! protobuf for `http/protobuf`, JSON for `http/json` (field numbers and
//! names from opentelemetry-proto's `trace/v1` and `common/v1`).

use super::record::{SpanEvent, SpanRecord, Status, Value};
use serde_json::{Value as Json, json};

/// Who exported the spans: the resource's attributes and the scope's name.
#[derive(Debug, Clone)]
pub struct Origin {
    pub resource: Vec<(String, Value)>,
    pub scope: &'static str,
    pub scope_version: &'static str,
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// An appending protobuf writer. Every nested message's length is
/// computed before it is written (the `*_len` functions), so each byte is
/// written once, straight into the request.
struct Wire<'a>(&'a mut Vec<u8>);

impl Wire<'_> {
    #[inline]
    fn varint(&mut self, mut value: u64) {
        // Tags and most lengths take one byte.
        if value < 0x80 {
            self.0.push(value as u8);
            return;
        }
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    #[inline]
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    /// The head of a length-delimited field whose body follows.
    #[inline]
    fn len_head(&mut self, field: u32, len: usize) {
        // Mostly a one-byte tag and a one-byte length, written as one piece.
        if field < 16 && len < 0x80 {
            self.0
                .extend_from_slice(&[(field << 3) as u8 | LEN, len as u8]);
            return;
        }
        self.tag(field, LEN);
        self.varint(len as u64);
    }

    #[inline]
    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.len_head(field, bytes.len());
        self.0.extend_from_slice(bytes);
    }

    #[inline]
    fn string(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.bytes(field, text.as_bytes());
        }
    }

    #[inline]
    fn fixed64(&mut self, field: u32, value: u64) {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn fixed32(&mut self, field: u32, value: u32) {
        self.tag(field, FIXED32);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.tag(field, VARINT);
            self.varint(value);
        }
    }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The length of a length-delimited field (one-byte tag) with a body of `len`.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The length of a string field, which is left out when empty.
fn string_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        field_len(text.len())
    }
}

fn uint_len(value: u64) -> usize {
    if value == 0 { 0 } else { 1 + varint_len(value) }
}

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Str(text) => field_len(text.len()),
        Value::Bool(_) => 2,
        Value::I64(number) => 1 + varint_len(*number as u64),
        Value::F64(_) => 9,
    }
}

fn write_any_value(wire: &mut Wire<'_>, value: &Value) {
    match value {
        Value::Str(text) => wire.bytes(1, text.as_bytes()),
        Value::Bool(flag) => {
            wire.tag(2, VARINT);
            wire.varint(u64::from(*flag));
        }
        Value::I64(number) => {
            wire.tag(3, VARINT);
            wire.varint(*number as u64);
        }
        Value::F64(number) => {
            wire.tag(4, FIXED64);
            wire.0.extend_from_slice(&number.to_le_bytes());
        }
    }
}

/// The head of a `KeyValue` of `len` bytes (under 128) as field `field`,
/// and its key.
#[inline]
fn short_key(out: &mut Vec<u8>, field: u32, len: usize, key: &str) {
    out.extend_from_slice(&[
        (field << 3) as u8 | LEN,
        len as u8,
        1 << 3 | LEN,
        key.len() as u8,
    ]);
    out.extend_from_slice(key.as_bytes());
}

fn key_value_len(key: &str, value: &Value) -> usize {
    field_len(key.len()) + field_len(any_value_len(value))
}

/// A `KeyValue` as field `field`.
#[inline]
fn write_key_value(wire: &mut Wire<'_>, field: u32, key: &str, value: &Value) {
    // Most attributes are short strings and numbers: every length then
    // takes one byte, and the heads are written as two fixed pieces.
    match value {
        Value::Str(text) if field < 16 && 6 + key.len() + text.len() < 0x80 => {
            let out = &mut *wire.0;
            short_key(out, field, 6 + key.len() + text.len(), key);
            out.extend_from_slice(&[
                2 << 3 | LEN,
                2 + text.len() as u8,
                1 << 3 | LEN,
                text.len() as u8,
            ]);
            out.extend_from_slice(text.as_bytes());
            return;
        }
        Value::I64(number) if field < 16 && key.len() < 0x60 && (0..0x4000).contains(number) => {
            // One varint byte below 128, two up to 16383.
            let (number_bytes, number_len) = if *number < 0x80 {
                ([*number as u8, 0], 1)
            } else {
                ([(*number as u8) | 0x80, (*number >> 7) as u8], 2)
            };
            let out = &mut *wire.0;
            short_key(out, field, 5 + key.len() + number_len, key);
            out.extend_from_slice(&[2 << 3 | LEN, 1 + number_len as u8, 3 << 3 | VARINT]);
            out.extend_from_slice(&number_bytes[..number_len]);
            return;
        }
        _ => {}
    }
    let value_len = any_value_len(value);
    wire.len_head(field, field_len(key.len()) + field_len(value_len));
    wire.bytes(1, key.as_bytes());
    wire.len_head(2, value_len);
    write_any_value(wire, value);
}

fn event_len(event: &SpanEvent) -> usize {
    9 + string_len(&event.name)
        + event
            .attributes
            .iter()
            .map(|(key, value)| field_len(key_value_len(key, value)))
            .sum::<usize>()
}

fn write_event(wire: &mut Wire<'_>, event: &SpanEvent) {
    wire.fixed64(1, event.time);
    wire.string(2, &event.name);
    for (key, value) in &event.attributes {
        write_key_value(wire, 3, key, value);
    }
}

fn status_len(code: u64, message: &str) -> usize {
    string_len(message) + uint_len(code)
}

/// `attributes` as a span's attribute fields, to be written as they are
/// into every span that carries them.
pub fn attribute_fields(attributes: &[(&'static str, Value)]) -> Vec<u8> {
    let mut fields = Vec::new();
    let mut wire = Wire(&mut fields);
    for (key, value) in attributes {
        write_key_value(&mut wire, 9, key, value);
    }
    fields
}

/// A span's encoded length: ids, name, kind, times, attributes, events,
/// status, flags (the same fields [`write_span`] writes).
fn span_len(span: &SpanRecord) -> usize {
    let parent = if span.parent_span_id == 0 {
        0
    } else {
        field_len(8)
    };
    let (code, message) = status_parts(&span.status);
    let status = if code == 0 {
        0
    } else {
        field_len(status_len(code, message))
    };
    field_len(16)
        + field_len(8)
        + parent
        + string_len(&span.name)
        + uint_len(span.kind as u64)
        + 9
        + 9
        + span
            .shared
            .as_ref()
            .map_or(0, |shared| shared.protobuf().len())
        + span
            .attributes
            .iter()
            .map(|(key, value)| field_len(key_value_len(key, value)))
            .sum::<usize>()
        + span
            .events
            .iter()
            .map(|event| field_len(event_len(event)))
            .sum::<usize>()
        + status
        + 6
}

fn write_span(wire: &mut Wire<'_>, span: &SpanRecord) {
    // The ids as one piece of fixed length, which is copied without a call.
    let mut ids = [0u8; 2 + 16 + 2 + 8 + 2 + 8];
    ids[..2].copy_from_slice(&[1 << 3 | LEN, 16]);
    ids[2..18].copy_from_slice(&span.context.trace_id.to_be_bytes());
    ids[18..20].copy_from_slice(&[2 << 3 | LEN, 8]);
    ids[20..28].copy_from_slice(&span.context.span_id.to_be_bytes());
    if span.parent_span_id == 0 {
        wire.0.extend_from_slice(&ids[..28]);
    } else {
        ids[28..30].copy_from_slice(&[4 << 3 | LEN, 8]);
        ids[30..].copy_from_slice(&span.parent_span_id.to_be_bytes());
        wire.0.extend_from_slice(&ids);
    }
    wire.string(5, &span.name);
    wire.uint(6, span.kind as u64);
    let mut times = [0u8; 1 + 8 + 1 + 8];
    times[0] = 7 << 3 | FIXED64;
    times[1..9].copy_from_slice(&span.start.to_le_bytes());
    times[9] = 8 << 3 | FIXED64;
    times[10..].copy_from_slice(&span.end.to_le_bytes());
    wire.0.extend_from_slice(&times);
    if let Some(shared) = &span.shared {
        wire.0.extend_from_slice(shared.protobuf());
    }
    for (key, value) in &span.attributes {
        write_key_value(wire, 9, key, value);
    }
    for event in &span.events {
        wire.len_head(11, event_len(event));
        write_event(wire, event);
    }
    let (code, message) = status_parts(&span.status);
    if code != 0 {
        wire.len_head(15, status_len(code, message));
        wire.string(2, message);
        wire.uint(3, code);
    }
    // Field 16 takes a two-byte tag.
    wire.fixed32(16, flags(span));
}

/// The protocol's status code and message.
fn status_parts(status: &Status) -> (u64, &str) {
    match status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error(message) => (2, message),
    }
}

/// Trace flags (sampled) and whether the parent is known to be remote.
fn flags(span: &SpanRecord) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    let sampled = u32::from(span.context.sampled);
    let remote = if span.parent_is_remote { IS_REMOTE } else { 0 };
    sampled | HAS_IS_REMOTE | remote
}

/// Appends `span` to `out` as one entry of a `ScopeSpans` message's span
/// list: the form the export queue keeps spans in, so that a request's
/// thread encodes its spans while they are in its cache and the export
/// thread only sends them.
pub fn span_entry(out: &mut Vec<u8>, span: &SpanRecord) {
    let len = span_len(span);
    out.reserve(field_len(len));
    let mut wire = Wire(out);
    wire.len_head(2, len);
    write_span(&mut wire, span);
}

/// Appends `span`'s fields (a `Span` message's body) to `out`, without
/// working out their length first: [`span_entry_head`] and the fields make
/// the same entry [`span_entry`] writes.
pub fn span_fields(out: &mut Vec<u8>, span: &SpanRecord) {
    write_span(&mut Wire(out), span);
}

/// The head of a span entry whose fields, `len` bytes, follow.
pub fn span_entry_head(out: &mut Vec<u8>, len: usize) {
    Wire(out).len_head(2, len);
}

/// One export request holding `spans`, in protobuf.
pub fn protobuf(origin: &Origin, spans: &[SpanRecord]) -> Vec<u8> {
    let mut entries = Vec::new();
    for span in spans {
        span_entry(&mut entries, span);
    }
    protobuf_of_entries(origin, &entries)
}

/// One export request holding spans already encoded by [`span_entry`].
pub fn protobuf_of_entries(origin: &Origin, entries: &[u8]) -> Vec<u8> {
    let mut request = request_head(origin, entries.len());
    request.reserve_exact(entries.len());
    request.extend_from_slice(entries);
    request
}

/// What an export request holding `entries_len` bytes of span entries
/// starts with: the resource and the scope, and the lengths of the
/// messages around the entries. The entries follow it.
pub fn request_head(origin: &Origin, entries_len: usize) -> Vec<u8> {
    let resource_len: usize = origin
        .resource
        .iter()
        .map(|(key, value)| field_len(key_value_len(key, value)))
        .sum();
    let scope_len = string_len(origin.scope) + string_len(origin.scope_version);
    let scope_spans_len = field_len(scope_len) + entries_len;
    let resource_spans_len = field_len(resource_len) + field_len(scope_spans_len);
    let head_len = field_len(resource_spans_len) - entries_len;
    let mut head = Vec::with_capacity(head_len);
    let mut wire = Wire(&mut head);
    wire.len_head(1, resource_spans_len);
    wire.len_head(1, resource_len);
    for (key, value) in &origin.resource {
        write_key_value(&mut wire, 1, key, value);
    }
    wire.len_head(2, scope_spans_len);
    wire.len_head(1, scope_len);
    wire.string(1, origin.scope);
    wire.string(2, origin.scope_version);
    debug_assert_eq!(head.len(), head_len, "computed and written lengths differ");
    head
}

/// The most bytes [`request_head`] writes for `origin`, for a batch of
/// entries under 4 GiB.
pub fn request_head_room(origin: &Origin) -> usize {
    request_head(origin, u32::MAX as usize).len()
}

fn json_value(value: &Value) -> Json {
    match value {
        Value::Str(text) => json!({ "stringValue": text }),
        Value::Bool(flag) => json!({ "boolValue": flag }),
        // Protobuf's JSON mapping writes 64-bit integers as strings.
        Value::I64(number) => json!({ "intValue": number.to_string() }),
        Value::F64(number) => json!({ "doubleValue": number }),
    }
}

fn json_attributes<'a>(list: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Json {
    Json::Array(
        list.into_iter()
            .map(|(key, value)| json!({ "key": key, "value": json_value(value) }))
            .collect(),
    )
}

/// One export request holding `spans`, in OTLP/JSON (ids in hex, as the
/// OTLP specification says for JSON).
pub fn json(origin: &Origin, spans: &[SpanRecord]) -> Vec<u8> {
    let spans: Vec<Json> = spans
        .iter()
        .map(|span| {
            let (code, message) = status_parts(&span.status);
            let mut object = json!({
                "traceId": span.context.trace_id_hex(),
                "spanId": span.context.span_id_hex(),
                "name": span.name,
                "kind": span.kind as u8,
                "startTimeUnixNano": span.start.to_string(),
                "endTimeUnixNano": span.end.to_string(),
                "attributes": json_attributes(span.all_attributes().map(|(k, v)| (*k, v))),
                "events": span.events.iter().map(|event| json!({
                    "timeUnixNano": event.time.to_string(),
                    "name": event.name,
                    "attributes": json_attributes(event.attributes.iter().map(|(k, v)| (*k, v))),
                })).collect::<Vec<_>>(),
                "status": { "code": code, "message": message },
                "flags": flags(span),
            });
            if span.parent_span_id != 0 {
                object["parentSpanId"] = format!("{:016x}", span.parent_span_id).into();
            }
            object
        })
        .collect();
    let request = json!({
        "resourceSpans": [{
            "resource": {
                "attributes": json_attributes(origin.resource.iter().map(|(k, v)| (k.as_str(), v))),
            },
            "scopeSpans": [{
                "scope": { "name": origin.scope, "version": origin.scope_version },
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).expect("JSON values always serialise")
}

#[cfg(test)]
mod schema;

#[cfg(test)]
mod tests {
    use super::super::context::SpanContext;
    use super::super::record::{SharedAttributes, SpanKind};
    use super::*;

    /// A protobuf field as read back: its number and its value.
    #[derive(Debug, Clone, PartialEq)]
    enum Field {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
    }

    /// Reads one protobuf message's fields in order, checking every length.
    fn fields(mut bytes: &[u8]) -> Vec<(u32, Field)> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let (byte, rest) = bytes.split_first().expect("a varint ends in the message");
                *bytes = rest;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return value;
                }
            }
            panic!("a varint of more than ten bytes");
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            let field = u32::try_from(key >> 3).unwrap();
            let value = match (key & 7) as u8 {
                VARINT => Field::Varint(varint(&mut bytes)),
                FIXED64 => {
                    let (value, rest) = bytes.split_at(8);
                    bytes = rest;
                    Field::Fixed64(u64::from_le_bytes(value.try_into().unwrap()))
                }
                FIXED32 => {
                    let (value, rest) = bytes.split_at(4);
                    bytes = rest;
                    Field::Fixed32(u32::from_le_bytes(value.try_into().unwrap()))
                }
                LEN => {
                    let len = usize::try_from(varint(&mut bytes)).unwrap();
                    assert!(len <= bytes.len(), "a length past the message's end");
                    let (value, rest) = bytes.split_at(len);
                    bytes = rest;
                    Field::Bytes(value.to_vec())
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, value));
        }
        out
    }

    fn bytes_of(fields: &[(u32, Field)], number: u32) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, value)| match value {
                Field::Bytes(bytes) => bytes.clone(),
                other => panic!("field {number} is {other:?}"),
            })
            .collect()
    }

    fn key_values(message: &[u8], number: u32) -> Vec<(String, Vec<(u32, Field)>)> {
        bytes_of(&fields(message), number)
            .iter()
            .map(|kv| {
                let kv = fields(kv);
                let key = String::from_utf8(bytes_of(&kv, 1).remove(0)).unwrap();
                (key, fields(&bytes_of(&kv, 2).remove(0)))
            })
            .collect()
    }

    fn sample_span() -> SpanRecord {
        SpanRecord {
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
                ("ratio", Value::F64(0.5)),
                ("negative", Value::I64(-1)),
            ],
            events: vec![SpanEvent {
                time: 1_700_000_000_000_100_000,
                name: "slow".into(),
                attributes: vec![("level", Value::Str("WARN".into()))],
            }],
            status: Status::Error("boom".into()),
        }
    }

    fn origin() -> Origin {
        Origin {
            resource: vec![("service.name".into(), Value::Str("gateway".into()))],
            scope: "dure",
            scope_version: "0.1.0",
        }
    }

    #[test]
    fn protobuf_export_reads_back_field_by_field() {
        let bytes = protobuf(&origin(), &[sample_span(), sample_span()]);
        let request = fields(&bytes);
        let resource_spans = bytes_of(&request, 1);
        assert_eq!(resource_spans.len(), 1);
        let resource_spans = fields(&resource_spans[0]);
        let resource = bytes_of(&resource_spans, 1).remove(0);
        let service = key_values(&resource, 1);
        assert_eq!(service[0].0, "service.name");
        assert_eq!(service[0].1, vec![(1, Field::Bytes(b"gateway".to_vec()))]);

        let scope_spans = fields(&bytes_of(&resource_spans, 2).remove(0));
        let scope = fields(&bytes_of(&scope_spans, 1).remove(0));
        assert_eq!(scope[0], (1, Field::Bytes(b"dure".to_vec())));
        let spans = bytes_of(&scope_spans, 2);
        assert_eq!(spans.len(), 2);

        let span = fields(&spans[0]);
        let get = |number: u32| {
            span.iter()
                .find(|(n, _)| *n == number)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("field {number} missing"))
        };
        assert_eq!(
            get(1),
            Field::Bytes(
                0x4bf92f3577b34da6a3ce929d0e0e4736_u128
                    .to_be_bytes()
                    .to_vec()
            )
        );
        assert_eq!(
            get(2),
            Field::Bytes(0x00f067aa0ba902b7_u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(4),
            Field::Bytes(0x1122334455667788_u64.to_be_bytes().to_vec())
        );
        assert_eq!(get(5), Field::Bytes(b"GET /api/user".to_vec()));
        assert_eq!(get(6), Field::Varint(2));
        assert_eq!(get(7), Field::Fixed64(1_700_000_000_000_000_000));
        assert_eq!(get(8), Field::Fixed64(1_700_000_000_000_250_000));
        assert_eq!(get(16), Field::Fixed32(0x301));

        let attributes = key_values(&spans[0], 9);
        let names: Vec<&str> = attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "peer.service",
                "http.route",
                "http.response.status_code",
                "retry",
                "ratio",
                "negative"
            ]
        );
        assert_eq!(
            attributes[0].1,
            vec![(1, Field::Bytes(b"identity".to_vec()))]
        );
        assert_eq!(
            attributes[1].1,
            vec![(1, Field::Bytes(b"/api/user".to_vec()))]
        );
        assert_eq!(attributes[2].1, vec![(3, Field::Varint(503))]);
        assert_eq!(attributes[3].1, vec![(2, Field::Varint(1))]);
        assert_eq!(attributes[4].1, vec![(4, Field::Fixed64(0.5f64.to_bits()))]);
        assert_eq!(attributes[5].1, vec![(3, Field::Varint(u64::MAX))]);

        let event = bytes_of(&span, 11).remove(0);
        let event_fields = fields(&event);
        assert_eq!(
            event_fields[0],
            (1, Field::Fixed64(1_700_000_000_000_100_000))
        );
        assert_eq!(event_fields[1], (2, Field::Bytes(b"slow".to_vec())));
        assert_eq!(key_values(&event, 3)[0].0, "level");

        let status = fields(&bytes_of(&span, 15).remove(0));
        assert_eq!(
            status,
            vec![(2, Field::Bytes(b"boom".to_vec())), (3, Field::Varint(2))]
        );
    }

    #[test]
    fn a_root_span_has_no_parent_field() {
        let mut span = sample_span();
        span.parent_span_id = 0;
        span.status = Status::Unset;
        let bytes = protobuf(&origin(), &[span]);
        let resource_spans = fields(&bytes_of(&fields(&bytes), 1).remove(0));
        let scope_spans = fields(&bytes_of(&resource_spans, 2).remove(0));
        let span = fields(&bytes_of(&scope_spans, 2).remove(0));
        assert!(span.iter().all(|(n, _)| *n != 4 && *n != 15), "{span:?}");
    }

    #[test]
    fn json_export_uses_hex_ids_and_the_protocol_names() {
        let request: Json = serde_json::from_slice(&json(&origin(), &[sample_span()])).unwrap();
        let span = &request["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert_eq!(span["parentSpanId"], "1122334455667788");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["attributes"][0]["key"], "peer.service");
        assert_eq!(span["attributes"][2]["value"]["intValue"], "503");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(
            request["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "gateway"
        );
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            Wire(&mut out).varint(value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }

    #[test]
    fn fields_after_a_head_make_the_same_entry() {
        let span = sample_span();
        let mut entry = Vec::new();
        span_entry(&mut entry, &span);
        let mut fields = Vec::new();
        span_fields(&mut fields, &span);
        let mut pieced = Vec::new();
        span_entry_head(&mut pieced, fields.len());
        pieced.extend_from_slice(&fields);
        assert_eq!(pieced, entry);
    }

    #[test]
    fn the_head_room_fits_every_head() {
        let room = request_head_room(&origin());
        for entries_len in [0, 1, 127, 128, 16_384, 300_000, u32::MAX as usize] {
            assert!(
                request_head(&origin(), entries_len).len() <= room,
                "{entries_len}"
            );
        }
    }

    #[test]
    fn short_attributes_encode_as_long_ones_do() {
        // The general path, field by field, to compare the short cuts with.
        fn general(key: &str, value: &Value) -> Vec<u8> {
            let mut out = Vec::new();
            let mut wire = Wire(&mut out);
            let value_len = any_value_len(value);
            wire.tag(9, LEN);
            wire.varint((field_len(key.len()) + field_len(value_len)) as u64);
            wire.tag(1, LEN);
            wire.varint(key.len() as u64);
            wire.0.extend_from_slice(key.as_bytes());
            wire.tag(2, LEN);
            wire.varint(value_len as u64);
            write_any_value(&mut wire, value);
            out
        }
        let long = "k".repeat(130);
        let mut cases = vec![
            ("http.route", Value::Str("/api/user".into())),
            ("request_id", Value::Str(String::new())),
            ("k", Value::Str("v".repeat(120))),
            ("k", Value::Str("v".repeat(121))),
            ("k", Value::Str("v".repeat(122))),
            (long.as_str(), Value::Str("v".into())),
            (long.as_str(), Value::I64(200)),
            ("x".repeat(95).leak(), Value::I64(1)),
            ("x".repeat(96).leak(), Value::I64(1)),
            ("x".repeat(120).leak(), Value::I64(0x3fff)),
        ];
        for number in [0, 1, 127, 128, 200, 503, 0x3fff, 0x4000, -1, i64::MAX] {
            cases.push(("http.response.status_code", Value::I64(number)));
        }
        for (key, value) in &cases {
            let mut out = Vec::new();
            write_key_value(&mut Wire(&mut out), 9, key, value);
            assert_eq!(out, general(key, value), "{key} = {value:?}");
            assert_eq!(out.len(), field_len(key_value_len(key, value)));
        }
    }
}
