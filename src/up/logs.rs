//! A child's JSON log line, made readable: `12:00:01 INFO message k=v …`.
//! Lines that are not JSON pass through unchanged.

use serde_json::{Map, Value};

pub fn render(line: &str) -> String {
    let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(line) else {
        return line.to_owned();
    };
    let time = record
        .remove("timestamp")
        .and_then(|t| t.as_str().and_then(|t| t.get(11..19)).map(str::to_owned))
        .unwrap_or_default();
    let level = record
        .remove("level")
        .and_then(|l| l.as_str().map(str::to_owned))
        .unwrap_or_default();
    let message = record
        .remove("message")
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_default();
    record.remove("target");
    let span = match record.remove("span") {
        Some(Value::Object(span)) => span,
        _ => Map::new(),
    };
    let mut out = format!("{time} {level:>5} {message}");
    // The span's OpenTelemetry attributes repeat what `method` and `route`
    // say; the span id matters only to a trace viewer.
    let shown = |key: &str| {
        !(key == "name" || key == "span_id" || key.starts_with("otel.") || key.starts_with("http."))
    };
    for (key, value) in record.iter().chain(span.iter()).filter(|(k, _)| shown(k)) {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        match value {
            Value::String(text) => out.push_str(text),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn json_lines_become_readable() {
        let line = r#"{"timestamp":"2026-11-21T12:00:01.123Z","level":"INFO","message":"request","status":200,"target":"x","span":{"route":"/api/user","name":"request"}}"#;
        assert_eq!(
            render(line),
            "12:00:01  INFO request status=200 route=/api/user"
        );
        assert_eq!(render("plain text"), "plain text");
    }
}
