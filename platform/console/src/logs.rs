//! The recent log lines of every process: parsed from the JSON lines the
//! children write, kept in a bounded buffer, searched.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// One log line, parsed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    /// Position in the buffer's history: lines after `seq` are newer.
    pub seq: u64,
    pub time: String,
    pub process: String,
    pub level: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub fields: Map<String, Value>,
}

impl LogLine {
    /// The fields as `key=value …`, strings without their quotes.
    pub fn fields_text(&self) -> String {
        self.fields
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a search asks for; every part that is set must match.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LogQuery {
    pub process: Option<String>,
    /// The lowest level shown: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: Option<String>,
    /// Text in the message or a field's value (case-insensitive).
    pub q: Option<String>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    /// Only lines newer than this position (live views poll with it).
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// The buffer: the last `capacity` lines of all processes together.
#[derive(Debug)]
pub struct LogBuffer {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    lines: VecDeque<Kept>,
    /// Each process's name once, shared by its lines.
    names: HashMap<String, Arc<str>>,
}

/// A line as the buffer keeps it: its fields as JSON text, not as a map
/// (a tenth of the memory), turned back into a [`LogLine`] when answered.
#[derive(Debug)]
struct Kept {
    seq: u64,
    time: Box<str>,
    process: Arc<str>,
    level: Box<str>,
    message: Box<str>,
    trace_id: Option<Box<str>>,
    request_id: Option<Box<str>>,
    fields: Box<str>,
}

impl Kept {
    fn line(&self) -> LogLine {
        LogLine {
            seq: self.seq,
            time: self.time.to_string(),
            process: self.process.to_string(),
            level: self.level.to_string(),
            message: self.message.to_string(),
            trace_id: self.trace_id.as_deref().map(str::to_owned),
            request_id: self.request_id.as_deref().map(str::to_owned),
            fields: serde_json::from_str(&self.fields).unwrap_or_default(),
        }
    }
}

/// Lines a search answers at most.
pub const MAX_LIMIT: usize = 1000;

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Parses `raw` (a JSON line, or plain text) from `process` and keeps it.
    pub fn push(&self, process: &str, raw: &str) {
        self.push_record(process, raw, json_object(raw));
    }

    /// Keeps `raw` from `process`, already parsed into `record` (its JSON
    /// object, or `None` for plain text) by a caller that needed it too.
    pub fn push_record(&self, process: &str, raw: &str, record: Option<Map<String, Value>>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = from_record(inner.next_seq, process, raw, record);
        inner.next_seq += 1;
        let name = inner
            .names
            .entry(process.to_owned())
            .or_insert_with(|| Arc::from(process))
            .clone();
        let kept = Kept {
            seq: line.seq,
            time: line.time.into(),
            process: name,
            level: line.level.into(),
            message: line.message.into(),
            trace_id: line.trace_id.map(Into::into),
            request_id: line.request_id.map(Into::into),
            fields: Value::Object(line.fields).to_string().into(),
        };
        if inner.lines.len() == self.capacity {
            inner.lines.pop_front();
        }
        inner.lines.push_back(kept);
    }

    /// The newest lines that match `query`, oldest first.
    pub fn search(&self, query: &LogQuery) -> Vec<LogLine> {
        let limit = query.limit.unwrap_or(200).clamp(1, MAX_LIMIT);
        let lowest = query.level.as_deref().map(rank);
        let text = query
            .q
            .as_deref()
            .map(str::to_lowercase)
            .filter(|t| !t.is_empty());
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found: Vec<LogLine> = inner
            .lines
            .iter()
            .rev()
            .filter(|line| query.after.is_none_or(|after| line.seq > after))
            .filter(|line| {
                query
                    .process
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .is_none_or(|p| &*line.process == p)
            })
            .filter(|line| lowest.is_none_or(|lowest| rank(&line.level) <= lowest))
            .filter(|line| matches(line.trace_id.as_deref(), query.trace_id.as_deref()))
            .filter(|line| matches(line.request_id.as_deref(), query.request_id.as_deref()))
            .filter(|line| text.as_deref().is_none_or(|t| contains(line, t)))
            .take(limit)
            .map(Kept::line)
            .collect();
        found.reverse();
        found
    }

    /// How many lines are kept now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|inner| inner.lines.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn matches(value: Option<&str>, wanted: Option<&str>) -> bool {
    match wanted.filter(|w| !w.is_empty()) {
        None => true,
        Some(wanted) => value == Some(wanted),
    }
}

fn contains(line: &Kept, text: &str) -> bool {
    line.message.to_lowercase().contains(text) || line.fields.to_lowercase().contains(text)
}

/// 0 for errors, up to 4 for trace: lower is more severe.
fn rank(level: &str) -> u8 {
    match level.to_ascii_lowercase().as_str() {
        "error" => 0,
        "warn" | "warning" => 1,
        "info" => 2,
        "debug" => 3,
        _ => 4,
    }
}

/// A child's line: the JSON the chassis writes (`timestamp`, `level`,
/// `message`, fields, `span` with the request's fields, `trace_id`), or
/// plain text kept as the message.
pub fn parse(seq: u64, process: &str, raw: &str) -> LogLine {
    from_record(seq, process, raw, json_object(raw))
}

/// The JSON object `raw` holds, if it is one.
pub fn json_object(raw: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(record)) => Some(record),
        _ => None,
    }
}

/// [`parse`] of a line whose JSON object was read already.
pub fn from_record(
    seq: u64,
    process: &str,
    raw: &str,
    record: Option<Map<String, Value>>,
) -> LogLine {
    let Some(mut record) = record else {
        return LogLine {
            seq,
            time: String::new(),
            process: process.to_owned(),
            level: "INFO".into(),
            message: raw.to_owned(),
            trace_id: None,
            request_id: None,
            fields: Map::new(),
        };
    };
    let mut take = |key: &str| match record.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let time = take("timestamp").unwrap_or_default();
    let level = take("level").unwrap_or_else(|| "INFO".into());
    let message = take("message").unwrap_or_default();
    let trace_id = take("trace_id");
    record.remove("target");
    record.remove("span_id");
    let mut fields = Map::new();
    if let Some(Value::Object(span)) = record.remove("span") {
        for (key, value) in span {
            if key != "name" && !key.starts_with("otel.") && key != "span_id" {
                fields.insert(key, value);
            }
        }
    }
    fields.extend(record);
    let request_id = match fields.get("request_id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    LogLine {
        seq,
        time,
        process: process.to_owned(),
        level,
        message,
        trace_id,
        request_id,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"timestamp":"2026-12-03T12:00:01.123Z","level":"INFO","message":"request","status":200,"target":"x","span":{"http.request.method":"GET","http.route":"/api/user","name":"request","otel.kind":"server","request_id":"r-1"},"trace_id":"t-1","span_id":"s-1"}"#;

    #[test]
    fn a_json_line_is_parsed_into_its_parts() {
        let line = parse(7, "posting", REQUEST);
        assert_eq!(line.seq, 7);
        assert_eq!(line.process, "posting");
        assert_eq!(line.level, "INFO");
        assert_eq!(line.message, "request");
        assert_eq!(line.time, "2026-12-03T12:00:01.123Z");
        assert_eq!(line.trace_id.as_deref(), Some("t-1"));
        assert_eq!(line.request_id.as_deref(), Some("r-1"));
        assert_eq!(line.fields["status"], 200);
        assert_eq!(line.fields["http.route"], "/api/user");
        assert!(!line.fields.contains_key("otel.kind"));
        assert!(line.fields_text().contains("http.route=/api/user"));
        let plain = parse(8, "gateway", "not json");
        assert_eq!(plain.message, "not json");
    }

    #[test]
    fn the_buffer_keeps_the_newest_lines() {
        let buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push("a", &format!("line {i}"));
        }
        assert_eq!(buffer.len(), 3);
        let all = buffer.search(&LogQuery::default());
        let messages: Vec<&str> = all.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["line 2", "line 3", "line 4"]);
    }

    #[test]
    fn searches_filter_by_every_part() {
        let buffer = LogBuffer::new(100);
        buffer.push("posting", REQUEST);
        buffer.push(
            "gateway",
            r#"{"level":"WARN","message":"upstream unreachable","cause":"refused"}"#,
        );
        buffer.push("posting", r#"{"level":"DEBUG","message":"polling"}"#);
        let by = |query: LogQuery| -> Vec<String> {
            buffer
                .search(&query)
                .into_iter()
                .map(|l| l.message)
                .collect()
        };
        assert_eq!(
            by(LogQuery {
                process: Some("gateway".into()),
                ..Default::default()
            }),
            ["upstream unreachable"]
        );
        assert_eq!(
            by(LogQuery {
                level: Some("warn".into()),
                ..Default::default()
            }),
            ["upstream unreachable"]
        );
        assert_eq!(
            by(LogQuery {
                level: Some("info".into()),
                ..Default::default()
            })
            .len(),
            2
        );
        assert_eq!(
            by(LogQuery {
                q: Some("REFUSED".into()),
                ..Default::default()
            }),
            ["upstream unreachable"]
        );
        assert_eq!(
            by(LogQuery {
                trace_id: Some("t-1".into()),
                ..Default::default()
            }),
            ["request"]
        );
        assert_eq!(
            by(LogQuery {
                request_id: Some("r-1".into()),
                ..Default::default()
            }),
            ["request"]
        );
        assert_eq!(
            by(LogQuery {
                after: Some(1),
                ..Default::default()
            }),
            ["polling"]
        );
        assert_eq!(
            by(LogQuery {
                limit: Some(1),
                ..Default::default()
            }),
            ["polling"]
        );
    }
}
