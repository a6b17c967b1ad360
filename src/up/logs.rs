//! A child's JSON log line, made readable: `12:00:01 INFO message k=v …`.
//! Lines that are not JSON pass through unchanged. At the terminal, a
//! request's access line is left out unless it is a warning or an error
//! (the console keeps them all).

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
    for (key, value) in record
        .iter()
        .chain(span.iter())
        .filter_map(|(k, v)| Some((shown(k)?, v)))
    {
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

/// Whether the terminal shows `line` by default: everything but requests'
/// access lines below WARN (long-polls, heartbeats and page views would
/// fill it) and DEBUG/TRACE lines.
pub fn worth_showing(line: &str) -> bool {
    let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
        return true;
    };
    let level = record
        .get("level")
        .and_then(Value::as_str)
        .unwrap_or("INFO");
    let message = record.get("message").and_then(Value::as_str).unwrap_or("");
    match level {
        "ERROR" | "WARN" => true,
        "INFO" => message != "request",
        _ => false,
    }
}

/// The name a field is shown under, if at all. A request's span names its
/// fields as OpenTelemetry does; a reader wants `method` and `route`. The
/// rest is for trace viewers.
fn shown(key: &str) -> Option<&str> {
    match key {
        "http.request.method" => Some("method"),
        "http.route" => Some("route"),
        "name" | "span_id" | "http.response.status_code" => None,
        other if other.starts_with("otel.") => None,
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn json_lines_become_readable() {
        let line = r#"{"timestamp":"2026-11-21T12:00:01.123Z","level":"INFO","message":"request","status":200,"target":"x","span":{"http.request.method":"GET","http.route":"/api/user","name":"request","otel.kind":"server"}}"#;
        assert_eq!(
            render(line),
            "12:00:01  INFO request status=200 method=GET route=/api/user"
        );
        assert_eq!(render("plain text"), "plain text");
    }

    #[test]
    fn requests_stay_off_the_terminal_unless_they_failed() {
        use super::worth_showing;
        assert!(!worth_showing(
            r#"{"level":"INFO","message":"request","status":200}"#
        ));
        assert!(worth_showing(
            r#"{"level":"WARN","message":"request","status":503}"#
        ));
        assert!(worth_showing(
            r#"{"level":"INFO","message":"posting ready"}"#
        ));
        assert!(!worth_showing(r#"{"level":"DEBUG","message":"polling"}"#));
        assert!(worth_showing("a panic message in plain text"));
    }
}
