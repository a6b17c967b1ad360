//! Routing, balancing, retries and refusals.

use crate::helpers::*;
use dure_gateway::Config;
use dure_gateway::rate_limit::Limit;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

async fn setup(customise: impl FnOnce(&mut Config)) -> (Part, Vec<Upstream>, Part) {
    let registry = start_registry().await;
    let upstreams = vec![
        start_upstream(&registry.url(), "one").await,
        start_upstream(&registry.url(), "two").await,
    ];
    wait_for_instances(&registry.url(), "echo", 2).await;
    let mut config = Config::new(registry_discovery(&registry.url()));
    customise(&mut config);
    let gateway = start_gateway(config).await;
    wait_routable(&gateway.url(), "/api/echo").await;
    (registry, upstreams, gateway)
}

async fn get(url: String) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "{}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_prefix_and_spreads_across_instances() {
    // Two worker threads share the listener, as in production.
    let (_registry, _upstreams, gateway) = setup(|config| config.workers = 2).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let body: Value = get(format!("{}/api/echo?x=1", gateway.url()))
            .await
            .json()
            .await
            .unwrap();
        *seen
            .entry(body["instance"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "both instances served: {seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "{seen:?}");
    // Proxied requests are counted under their route prefix, and the
    // process reports its memory and CPU.
    let metrics = reqwest::get(format!("{}/metrics", gateway.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_server_requests_total{")
                && l.contains("http_route=\"/api/echo\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes "),
        "{metrics}"
    );
    assert!(metrics.contains("process_cpu_seconds_total "), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_set_and_hop_by_hop_ones_dropped() {
    let (_registry, _upstreams, gateway) = setup(|_| {}).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/echo", gateway.url()))
        .header("x-request-id", "trace-me-123")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let body: Value = response.json().await.unwrap();
    let headers = &body["headers"];
    assert_eq!(headers["x-request-id"], "trace-me-123");
    // The gateway trusts no proxy by default: the client's claim is replaced.
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(
        headers["x-forwarded-host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(headers.get("x-private-hop").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let (_registry, _upstreams, gateway) = setup(|_| {}).await;
    let client = reqwest::Client::new();
    let echo = |query: &'static str| {
        let request = client.get(format!("{}/api/echo{query}", gateway.url()));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            (
                body["instance"].as_str().unwrap().to_owned(),
                body["peer"].as_str().unwrap().to_owned(),
            )
        }
    };
    // One request at a time: each instance sees one keep-alive connection,
    // also across a HEAD, whose empty body hands its connection back too.
    let mut peers: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..20 {
        if round == 10 {
            let head = client
                .head(format!("{}/api/echo", gateway.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(head.status(), StatusCode::OK);
        }
        let (instance, peer) = echo("").await;
        peers.entry(instance).or_default().push(peer);
    }
    for (instance, seen) in &peers {
        assert!(
            seen.iter().all(|peer| *peer == seen[0]),
            "{instance} saw several connections: {seen:?}"
        );
    }
    // An instance that closes its connection after answering: the next
    // request gets a new connection, and no client sees an error.
    let mut after_close = Vec::new();
    for _ in 0..10 {
        let (closed_by, closed_peer) = echo("?close").await;
        let (instance, peer) = echo("").await;
        if instance == closed_by {
            after_close.push(peer != closed_peer);
        }
    }
    assert!(!after_close.is_empty());
    assert!(after_close.iter().all(|new| *new), "{after_close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_retried_on_another_instance_when_one_dies() {
    let (_registry, mut upstreams, gateway) = setup(|_| {}).await;
    // Killed: its lease lingers, so the gateway still picks it at times.
    upstreams[0].part.kill();
    for _ in 0..30 {
        let response = get(format!("{}/api/echo", gateway.url())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["instance"], "two");
    }
    // A POST is not retried: it gets 201-or-clear-error, never a hang.
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let started = Instant::now();
        let response = client
            .post(format!("{}/api/echo", gateway.url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            matches!(response.status(), StatusCode::OK | StatusCode::BAD_GATEWAY),
            "{}",
            response.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instance_left_is_503_with_retry_after() {
    let (registry, mut upstreams, gateway) = setup(|_| {}).await;
    for upstream in &mut upstreams {
        upstream.part.stop().await;
    }
    wait_for_instances(&registry.url(), "echo", 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = get(format!("{}/api/echo", gateway.url())).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_are_413_before_any_upstream() {
    let (_registry, upstreams, gateway) = setup(|config| config.body_limit = 1024).await;
    let before: usize = upstreams
        .iter()
        .map(|u| u.hits.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    let response = reqwest::Client::new()
        .post(format!("{}/api/echo", gateway.url()))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    let after: usize = upstreams
        .iter()
        .map(|u| u.hits.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert_eq!(before, after);
    // Within the limit it passes.
    let response = reqwest::Client::new()
        .post(format!("{}/api/echo", gateway.url()))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["body_len"], 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_internal_and_registry_routes_are_404() {
    let (_registry, _upstreams, gateway) = setup(|_| {}).await;
    for path in ["/api/nothing", "/internal/descriptor"] {
        assert_problem(
            get(format!("{}{path}", gateway.url())).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    // Outside /api/ a browser asks for pages: the same 404, as a page.
    for path in ["/internal/secret", "/v1/services", "/v1/instances", "/"] {
        let response = get(format!("{}{path}", gateway.url())).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        let body = response.text().await.unwrap();
        assert!(body.contains("There is no such page."), "{path}: {body}");
        assert!(!body.contains("internal"), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_through_unbuffered() {
    let (_registry, _upstreams, gateway) = setup(|_| {}).await;
    let started = Instant::now();
    let mut response = get(format!("{}/api/events", gateway.url())).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"data: first\n\n");
    let second = response.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: second\n\n");
    assert!(
        first_at < Duration::from_millis(400),
        "the first event waited for the second: {first_at:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_at_the_edge() {
    let (_registry, upstreams, gateway) = setup(|_| {}).await;
    let before: usize = upstreams
        .iter()
        .map(|u| u.hits.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    for header in ["Bearer not-a-jwt", "Bearer a.b.c", "Basic abc"] {
        let response = reqwest::Client::new()
            .get(format!("{}/api/echo", gateway.url()))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let after: usize = upstreams
        .iter()
        .map(|u| u.hits.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert_eq!(before, after, "no upstream was touched");
    // Anonymous requests pass; the service decides.
    assert_eq!(
        get(format!("{}/api/echo", gateway.url())).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_504_after_the_route_timeout() {
    let (_registry, _upstreams, gateway) = setup(|config| {
        config
            .upstream_timeouts
            .insert("echo".into(), Duration::from_millis(300));
    })
    .await;
    let started = Instant::now();
    assert_problem(
        get(format!("{}/api/slow", gateway.url())).await,
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_rate_limit_get_429() {
    let (_registry, _upstreams, gateway) = setup(|config| {
        config.rate_limit = Some(Limit {
            per_second: 1.0,
            burst: 3.0,
        });
    })
    .await;
    // setup's readiness probe may have used a token; drain what is left.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(format!("{}/api/echo", gateway.url())).await.status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let response = get(format!("{}/api/echo", gateway.url())).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_openapi_lists_only_public_paths() {
    let (_registry, _upstreams, gateway) = setup(|_| {}).await;
    let doc: Value = get(format!("{}/api/openapi.json", gateway.url()))
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| p.starts_with("/api/"))
    );
}
