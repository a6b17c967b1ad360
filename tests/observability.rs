//! Traces, correlated logs and metrics of a whole `dure up` system, read the
//! way an operator's tools read them: an OTLP/HTTP receiver, the JSON log
//! stream, and a real Prometheus server.

mod support;

use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::system::*;

/// A span as an OTLP export carries it, with its process's service; ids in
/// hex, as OTLP/JSON writes them.
#[derive(Debug, Clone)]
struct ExportedSpan {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i64,
    attributes: Vec<(String, String)>,
}

impl ExportedSpan {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

/// An OTLP/HTTP trace receiver, for protobuf and JSON as a collector is:
/// collects every exported span, and the content type of each request.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (String, Self) {
        let collector = Self::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, collector)
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }

    fn content_types(&self) -> Vec<String> {
        self.content_types.lock().unwrap().clone()
    }
}

async fn receive(
    State(collector): State<Collector>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    collector
        .content_types
        .lock()
        .unwrap()
        .push(content_type.clone());
    // Answered in the request's own encoding, as the protocol says.
    let (received, answer) = match content_type.as_str() {
        "application/x-protobuf" => (
            from_protobuf(&body),
            ExportTraceServiceResponse::default().encode_to_vec(),
        ),
        "application/json" => (from_json(&body), b"{}".to_vec()),
        other => {
            return (
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type {other:?}"),
            )
                .into_response();
        }
    };
    collector.spans.lock().unwrap().extend(received);
    ([("content-type", content_type)], answer).into_response()
}

fn from_protobuf(body: &[u8]) -> Vec<ExportedSpan> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP/protobuf export");
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .map(|resource| proto_attributes(resource.attributes))
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(ExportedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind.into(),
                    attributes: proto_attributes(span.attributes),
                });
            }
        }
    }
    received
}

/// OTLP key-values, values as text whatever their type.
fn proto_attributes(list: Vec<KeyValue>) -> Vec<(String, String)> {
    list.into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|value| value.value) {
                Some(any_value::Value::StringValue(text)) => text,
                Some(any_value::Value::IntValue(number)) => number.to_string(),
                Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
                Some(any_value::Value::DoubleValue(number)) => number.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key, value)
        })
        .collect()
}

fn from_json(body: &[u8]) -> Vec<ExportedSpan> {
    let request: Value = serde_json::from_slice(body).expect("an OTLP/JSON export");
    let mut received = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource["resource"]["attributes"])
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                received.push(ExportedSpan {
                    service: service.clone(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    name: text(&span["name"]),
                    kind: span["kind"].as_i64().unwrap_or(0),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    received
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// OTLP/JSON key-value lists, values as text whatever their type.
fn attributes(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let value = &kv["value"];
            let value = value
                .get("stringValue")
                .or_else(|| value.get("value").and_then(|v| v.get("stringValue")))
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            (text(&kv["key"]), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_comment_from_the_gateway_to_the_consumer() {
    // No protocol set: the default, http/protobuf.
    comment_trace_is_exported(None, "application/x-protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_comment_over_http_json() {
    comment_trace_is_exported(Some("http/json"), "application/json").await;
}

/// A comment made through the gateway is one trace across the processes,
/// exported with `protocol` (the default when none) in requests of
/// `content_type`, and the request's log line carries its trace id.
async fn comment_trace_is_exported(protocol: Option<&str>, content_type: &str) {
    let (endpoint, collector) = Collector::start().await;
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    if let Some(protocol) = protocol {
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", protocol));
    }
    let mut system = System::start_with_env(&["--log-format", "json"], &env);
    let gateway = system.gateway.clone();
    let client = reqwest::Client::new();
    let ann = sign_up_and_login(&client, &gateway).await;
    let bob = sign_up_and_login_as(&client, &gateway, "bob").await;
    let posting: Value = client
        .post(format!("{gateway}/api/postings"))
        .bearer_auth(&ann)
        .json(&json!({"title": "Traced", "body": "Follow me"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let comment = client
        .post(format!(
            "{gateway}/api/postings/{}/comments",
            posting["id"].as_str().unwrap()
        ))
        .bearer_auth(&bob)
        .json(&json!({"body": "Found you"}))
        .send()
        .await
        .unwrap();
    assert_eq!(comment.status(), 201);

    // The posting service's span for the comment names the trace; the rest
    // of the chain must be in it, each span the child of the one before.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut chain = comment_chain(&collector.spans());
    while chain.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        chain = comment_chain(&collector.spans());
    }
    let content_types = collector.content_types();
    assert!(
        !content_types.is_empty() && content_types.iter().all(|t| t == content_type),
        "export requests should all be {content_type}: {content_types:?}"
    );
    let spans = collector.spans();
    assert!(
        chain.is_some(),
        "no complete trace of the comment among {} spans:\n{}",
        spans.len(),
        spans
            .iter()
            .map(|s| format!(
                "{} {} {} trace={} span={} parent={}",
                s.service, s.kind, s.name, s.trace_id, s.span_id, s.parent_span_id
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let trace_id = chain.unwrap();

    // Every process exported with its resource.
    for service in ["gateway", "posting", "notification"] {
        assert!(
            spans.iter().any(|s| s.service == service),
            "nothing from {service}"
        );
    }

    // The posting service's request log line carries the same trace id.
    let needle = format!("\"trace_id\":\"{trace_id}\"");
    assert!(
        system.wait_until(
            |l| l.contains(&needle) && l.contains("/comments"),
            Duration::from_secs(10)
        ),
        "no request log line with {needle}"
    );
    let line = system
        .seen
        .iter()
        .find(|l| l.contains(&needle) && l.contains("/comments"))
        .expect("the comment's request line carries its trace id");
    let record: Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(record["trace_id"], trace_id.as_str());
    assert_eq!(record["span_id"].as_str().map(str::len), Some(16), "{line}");
}

/// The trace id of a complete comment trace: gateway server span → its
/// upstream client span → posting's handler span → the database span →
/// the outbox append → notification's consumer span.
fn comment_chain(spans: &[ExportedSpan]) -> Option<String> {
    let handler = spans.iter().find(|s| {
        s.service == "posting"
            && s.kind == SERVER
            && s.attribute("http.route") == Some("/api/postings/{id}/comments")
            && s.attribute("http.request.method") == Some("POST")
    })?;
    let in_trace = |s: &&ExportedSpan| s.trace_id == handler.trace_id;
    let by_id = |id: &str| spans.iter().filter(in_trace).find(|s| s.span_id == id);
    let upstream = by_id(&handler.parent_span_id)?;
    assert_eq!(
        (upstream.service.as_str(), upstream.kind),
        ("gateway", CLIENT),
        "{upstream:?}"
    );
    assert_eq!(upstream.attribute("peer.service"), Some("posting"));
    assert!(upstream.attribute("server.address").is_some());
    let edge = by_id(&upstream.parent_span_id)?;
    assert_eq!(
        (edge.service.as_str(), edge.kind),
        ("gateway", SERVER),
        "{edge:?}"
    );
    assert!(
        edge.parent_span_id.is_empty(),
        "the gateway span is the root"
    );
    let db = spans
        .iter()
        .filter(in_trace)
        .find(|s| s.name == "db insert_comment" && s.parent_span_id == handler.span_id)?;
    assert_eq!(db.kind, CLIENT);
    let append = spans
        .iter()
        .filter(in_trace)
        .find(|s| s.kind == PRODUCER && s.parent_span_id == db.span_id)?;
    assert_eq!(append.service, "posting");
    let consumer = spans.iter().filter(in_trace).find(|s| {
        s.service == "notification"
            && s.kind == CONSUMER
            && s.parent_span_id == append.span_id
            && s.attribute("event.type") == Some("comment.added")
    })?;
    assert_eq!(consumer.name, "consume comment.added");
    Some(handler.trace_id.clone())
}

/// The Debian `prometheus` binary, as `.ci/run` installs it.
fn prometheus() -> Option<std::path::PathBuf> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_with_the_shipped_configuration() {
    let Some(binary) = prometheus() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have the prometheus binary (.ci/run installs it)"
        );
        eprintln!("prometheus is not installed: skipping");
        return;
    };
    let system = System::start(&[]);
    let registry_address = system.registry.trim_start_matches("http://").to_owned();
    let work = system.data_dir.join("prometheus");
    std::fs::create_dir_all(&work).unwrap();
    // The shipped configuration, pointed at this system's registry and
    // scraping faster.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/observability/prometheus.yml"),
    )
    .unwrap();
    assert!(shipped.contains("127.0.0.1:8761"));
    let config = shipped
        .replace("127.0.0.1:8761", &registry_address)
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("refresh_interval: 5s", "refresh_interval: 1s");
    std::fs::write(work.join("prometheus.yml"), config).unwrap();
    let port = support::free_port();
    let mut server = std::process::Command::new(binary)
        .arg(format!(
            "--config.file={}",
            work.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let prometheus = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let query = |q: &'static str| {
        let client = client.clone();
        let prometheus = prometheus.clone();
        async move {
            let Ok(response) = client
                .get(format!("{prometheus}/api/v1/query?query={}", encode(q)))
                .send()
                .await
            else {
                return Vec::new();
            };
            let body: Value = response.json().await.unwrap_or_default();
            body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };

    // Every process is a target, and every scrape parsed.
    let services = [
        "registry",
        "gateway",
        "identity",
        "posting",
        "notice",
        "notification",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let all_up = |results: &[Value]| {
        services.iter().all(|service| {
            results
                .iter()
                .any(|r| r["metric"]["service"] == *service && r["value"][1] == "1")
        })
    };
    let mut last = query("up").await;
    while !all_up(&last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = query("up").await;
    }
    assert!(
        all_up(&last),
        "not every service is up in Prometheus: {last:?}"
    );

    // Requests move the counters Prometheus reads.
    let total = |results: Vec<Value>| -> f64 {
        results
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum()
    };
    let before = total(query("sum(http_server_requests_total{service=\"posting\"})").await);
    for _ in 0..5 {
        let listed = client
            .get(format!("{}/api/postings", system.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
    }
    let moved = eventually(Duration::from_secs(15), || async move {
        total(query("sum(http_server_requests_total{service=\"posting\"})").await) >= before + 5.0
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        moved,
        "posting's request counter did not move from {before}"
    );
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
