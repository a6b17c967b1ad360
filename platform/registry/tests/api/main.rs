//! The registry's internal API over HTTP against a running registry.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

struct Registry {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(heartbeat: Duration) -> Registry {
    dure_chassis::telemetry::init_test_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dure_registry::run(
        dure_registry::Config::new(heartbeat),
        dure_chassis::serving::Listen::tcp(listener),
        async {
            let _ = stopped.await;
        },
    ));
    Registry { url, _stop: stop }
}

fn registration(id: &str) -> Value {
    json!({"service": "posting", "instance_id": id, "address": "http://127.0.0.1:7002",
           "version": "1.2.3", "metadata": {"routes": "/api/postings"}})
}

#[tokio::test]
async fn register_list_heartbeat_deregister() {
    let registry = start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/v1/instances", registry.url))
        .json(&registration("p-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.json::<Value>().await.unwrap(),
        json!({"lease_ttl_secs": 15})
    );

    let services: Value = client
        .get(format!("{}/v1/services", registry.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let instance = &services["services"][0]["instances"][0];
    assert_eq!(services["services"][0]["name"], "posting");
    assert_eq!(instance["instance_id"], "p-1");
    assert_eq!(instance["version"], "1.2.3");
    assert_eq!(instance["metadata"]["routes"], "/api/postings");

    let beat = client
        .put(format!("{}/v1/instances/p-1/heartbeat", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    let gone = client
        .delete(format!("{}/v1/instances/p-1", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let beat = client
        .put(format!("{}/v1/instances/p-1/heartbeat", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::NOT_FOUND);
    assert_eq!(beat.headers()["content-type"], "application/problem+json");
    // Deregistering twice is fine.
    let again = client
        .delete(format!("{}/v1/instances/p-1", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_watch_waits_for_a_change_past_its_index() {
    let registry = start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let first = client
        .get(format!("{}/v1/services/posting", registry.url))
        .send()
        .await
        .unwrap();
    let index: u64 = first.headers()["x-dure-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"name": "posting", "instances": []})
    );

    let watch_url = format!(
        "{}/v1/services/posting?index={index}&wait=10s",
        registry.url
    );
    let watcher = tokio::spawn(async move {
        let started = Instant::now();
        let response = reqwest::get(watch_url).await.unwrap();
        (started.elapsed(), response.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !watcher.is_finished(),
        "the watch answered before anything changed"
    );
    client
        .post(format!("{}/v1/instances", registry.url))
        .json(&registration("p-1"))
        .send()
        .await
        .unwrap();
    let (waited, body) = watcher.await.unwrap();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(body["instances"][0]["instance_id"], "p-1");

    // With no change, the watch returns when `wait` runs out.
    let started = Instant::now();
    let current = client
        .get(format!("{}/v1/services", registry.url))
        .send()
        .await
        .unwrap();
    let index = current.headers()["x-dure-index"]
        .to_str()
        .unwrap()
        .to_owned();
    client
        .get(format!(
            "{}/v1/services?index={index}&wait=200ms",
            registry.url
        ))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    let bad = client
        .get(format!("{}/v1/services?index=1&wait=soon", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_registrations_are_422_and_change_nothing() {
    let registry = start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    for (field, value) in [
        ("service", json!("Posting Service")),
        ("instance_id", json!("a/b")),
        ("address", json!("javascript:alert(1)")),
    ] {
        let mut body = registration("p-1");
        body[field] = value;
        let response = client
            .post(format!("{}/v1/instances", registry.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let response = client
        .post(format!("{}/v1/instances", registry.url))
        .json(&json!({"service": "posting"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let services: Value = client
        .get(format!("{}/v1/services", registry.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services, json!({"services": []}));
}

#[tokio::test]
async fn the_dashboard_lists_instances_and_escapes_them() {
    let registry = start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let mut body = registration("p-1");
    body["version"] = json!("<script>alert(1)</script>");
    client
        .post(format!("{}/v1/instances", registry.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let page = client
        .get(format!("{}/", registry.url))
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("posting") && html.contains("p-1") && html.contains("http://127.0.0.1:7002")
    );
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
}

#[tokio::test]
async fn prometheus_discovers_every_instance() {
    let registry = start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/v1/instances", registry.url))
        .json(&registration("p-1"))
        .send()
        .await
        .unwrap();
    let groups: Value = client
        .get(format!("{}/v1/prometheus-targets", registry.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        groups,
        json!([{"targets": ["127.0.0.1:7002"], "labels": {"service": "posting", "instance_id": "p-1"}}])
    );
}
