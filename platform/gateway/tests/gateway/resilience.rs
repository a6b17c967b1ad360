//! Breakers, and the home page that degrades instead of failing.

use crate::helpers::*;
use dure_gateway::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn setup(customise: impl FnOnce(&mut Config)) -> (Part, Upstream, Part) {
    let registry = start_registry().await;
    let upstream = start_upstream(&registry.url(), "one").await;
    wait_for_instances(&registry.url(), "echo", 1).await;
    let mut config = Config::new(registry_discovery(&registry.url()));
    customise(&mut config);
    let gateway = start_gateway(config).await;
    wait_routable(&gateway.url(), "/api/echo").await;
    (registry, upstream, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_service_trips_its_breaker_then_recovers() {
    let (_registry, _upstream, gateway) = setup(|config| {
        config
            .upstream_timeouts
            .insert("echo".into(), Duration::from_millis(150));
        config.breaker.open_for = Duration::from_millis(800);
    })
    .await;
    let client = reqwest::Client::new();
    // Timeouts fill the breaker's window (10 calls minimum, the readiness
    // probe of the setup was the first) until it opens.
    let mut statuses = Vec::new();
    while statuses.len() < 12 {
        let status = client
            .get(format!("{}/api/slow", gateway.url()))
            .send()
            .await
            .unwrap()
            .status();
        statuses.push(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
    }
    let timeouts = statuses
        .iter()
        .filter(|s| **s == StatusCode::GATEWAY_TIMEOUT)
        .count();
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!((5..=10).contains(&timeouts), "{statuses:?}");

    // Open: refused at once, even on a route that would work.
    let started = Instant::now();
    let refused = client
        .get(format!("{}/api/echo", gateway.url()))
        .send()
        .await
        .unwrap();
    // Well under the upstream timeout: nothing upstream was waited for.
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after));

    // After the open period, healthy trial calls close it again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..3 {
        let response = client
            .get(format!("{}/api/echo", gateway.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    for _ in 0..5 {
        assert_eq!(
            client
                .get(format!("{}/api/echo", gateway.url()))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let metrics = client
        .get(format!("{}/metrics", gateway.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("circuit_breaker_state{name=\"echo\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_composes_and_degrades_but_stays_200() {
    let (_registry, mut upstream, gateway) = setup(|_| {}).await;
    let client = reqwest::Client::new();
    let home: Value = client
        .get(format!("{}/api/home", gateway.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(home["notices"], json!([{"id": "n1"}]));
    assert_eq!(home["postings"], json!([{"id": "p1"}]));
    assert_eq!(
        home["unread_notifications"],
        Value::Null,
        "anonymous: no count, and not degraded"
    );
    assert_eq!(home["degraded"], json!([]));

    // With a token, the notification part is asked for; no such service here.
    let with_token = client
        .get(format!("{}/api/home", gateway.url()))
        .header("authorization", "Bearer not-checked-here")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
    let home: Value = with_token.json().await.unwrap();
    assert_eq!(home["degraded"], json!(["notification"]));

    upstream.part.kill();
    let started = Instant::now();
    let response = client
        .get(format!("{}/api/home", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
    let home: Value = response.json().await.unwrap();
    assert_eq!(home["degraded"], json!(["notice", "posting"]));
    assert_eq!(home["postings"], json!([]));
}
