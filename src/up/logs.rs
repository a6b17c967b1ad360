//! A child's JSON log line, made readable: `12:00:01 INFO message k=v …`.
//! Lines that are not JSON pass through unchanged. At the terminal, a
//! request's access line is left out unless it is a warning or an error
//! (the console keeps them all).

use serde_json::{Map, Value};

/// `line` made readable, from its JSON object `record` (plain text as it is).
pub fn render(line: &str, record: Option<&Map<String, Value>>) -> String {
    let Some(record) = record else {
        return line.to_owned();
    };
    let text = |key: &str| record.get(key).and_then(Value::as_str).unwrap_or("");
    let time = text("timestamp").get(11..19).unwrap_or("");
    let mut out = format!("{time} {:>5} {}", text("level"), text("message"));
    let own = record.iter().filter(|(k, _)| {
        !matches!(
            k.as_str(),
            "timestamp" | "level" | "message" | "target" | "span"
        )
    });
    let span = record
        .get("span")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    for (key, value) in own.chain(span).filter_map(|(k, v)| Some((shown(k)?, v))) {
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

/// Whether the terminal shows a line by default (`record` is its JSON
/// object; plain text is always shown): everything but requests' access
/// lines below WARN (long-polls, heartbeats and page views would fill it)
/// and DEBUG/TRACE lines.
pub fn worth_showing(record: Option<&Map<String, Value>>) -> bool {
    let Some(record) = record else {
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
    use dure_console::logs::json_object;

    fn rendered(line: &str) -> String {
        render(line, json_object(line).as_ref())
    }

    #[test]
    fn json_lines_become_readable() {
        let line = r#"{"timestamp":"2026-11-21T12:00:01.123Z","level":"INFO","message":"request","status":200,"target":"x","span":{"http.request.method":"GET","http.route":"/api/user","name":"request","otel.kind":"server"}}"#;
        assert_eq!(
            rendered(line),
            "12:00:01  INFO request status=200 method=GET route=/api/user"
        );
        assert_eq!(rendered("plain text"), "plain text");
    }

    #[test]
    fn requests_stay_off_the_terminal_unless_they_failed() {
        let worth_showing = |line: &str| super::worth_showing(json_object(line).as_ref());
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
