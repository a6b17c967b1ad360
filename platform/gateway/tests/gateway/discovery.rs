//! Discovery surviving a registry outage, and the registry's recovery.

use crate::helpers::*;
use dure_gateway::Config;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_goes_on_without_the_registry_and_recovers_after_it_restarts() {
    let mut registry = start_registry().await;
    let registry_address = registry.address;
    let _upstream = start_upstream(&registry.url(), "one").await;
    wait_for_instances(&registry.url(), "echo", 1).await;
    let gateway = start_gateway(Config::new(registry_discovery(&registry.url()))).await;
    wait_routable(&gateway.url(), "/api/echo").await;

    registry.kill();
    // Well past the lease TTL (3 heartbeats): nothing expires what is cached.
    let until = Instant::now() + HEARTBEAT * 10;
    while Instant::now() < until {
        let response = reqwest::get(format!("{}/api/echo", gateway.url()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new, empty registry on the same address: the instances' next
    // heartbeats get 404, they register again, and the picture is back.
    let started = Instant::now();
    let registry = start_registry_at(registry_address).await;
    wait_for_instances(&registry.url(), "echo", 1).await;
    wait_for_instances(&registry.url(), "gateway", 1).await;
    assert!(
        started.elapsed() < HEARTBEAT * 5,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        reqwest::get(format!("{}/api/echo", gateway.url()))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_instance_leaves_the_registry_after_three_missed_heartbeats() {
    let registry = start_registry().await;
    let client = reqwest::Client::new();
    let ghost = serde_json::json!({
        "service": "echo", "instance_id": "ghost-1", "address": "http://127.0.0.1:9", "version": "x", "metadata": {}
    });
    let created = client
        .post(format!("{}/v1/instances", registry.url()))
        .json(&ghost)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let lease: serde_json::Value = created.json().await.unwrap();
    assert_eq!(
        lease["lease_ttl_secs"], 1,
        "a 600 ms lease is announced rounded up"
    );
    let started = Instant::now();
    loop {
        let catalog: dure_contracts::registry::Catalog = client
            .get(format!("{}/v1/services", registry.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if catalog.instances("echo").is_empty() {
            break;
        }
        assert!(
            started.elapsed() < HEARTBEAT * 5,
            "the silent instance was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= HEARTBEAT * 3 - Duration::from_millis(50));
    // Its next heartbeat gets 404: register again.
    let beat = client
        .put(format!("{}/v1/instances/ghost-1/heartbeat", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::NOT_FOUND);
}
