//! The peer client against real instances.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use dure_chassis::discovery::Directory;
use dure_chassis::peer::{Peer, PeerError, PeerSettings};
use dure_contracts::registry::{Catalog, Instance, ServiceInstances};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An instance answering `/thing` with `status`, counting its calls.
async fn instance(status: StatusCode, calls: Arc<AtomicUsize>) -> String {
    let app = Router::new().route(
        "/thing",
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { (status, "thing") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn directory(addresses: &[&str]) -> Directory {
    Directory::fixed(Catalog {
        services: vec![ServiceInstances {
            name: "other".into(),
            instances: addresses
                .iter()
                .enumerate()
                .map(|(n, address)| Instance {
                    service: "other".into(),
                    instance_id: format!("other-{n}"),
                    address: (*address).to_owned(),
                    version: String::new(),
                    metadata: BTreeMap::new(),
                    registered_at: String::new(),
                    last_heartbeat_at: String::new(),
                })
                .collect(),
        }],
    })
}

#[tokio::test]
async fn failing_instances_are_retried_elsewhere_then_ejected() {
    let (bad_calls, good_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let bad = instance(StatusCode::SERVICE_UNAVAILABLE, bad_calls.clone()).await;
    let good = instance(StatusCode::OK, good_calls.clone()).await;
    let peer = Peer::new(directory(&[&bad, &good]), "other", PeerSettings::default());
    for _ in 0..30 {
        let response = peer.get("/thing", Some("req-1")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Five consecutive 503s eject the bad instance; it is then left alone.
    assert!(
        bad_calls.load(Ordering::SeqCst) <= 6,
        "{} calls to the failing instance",
        bad_calls.load(Ordering::SeqCst)
    );
    assert_eq!(good_calls.load(Ordering::SeqCst), 30);
}

#[tokio::test]
async fn a_dead_service_opens_the_breaker_and_is_refused_fast() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let peer = Peer::new(directory(&[&dead]), "other", PeerSettings::default());
    let mut opened = false;
    for _ in 0..15 {
        match peer.get("/thing", None).await {
            Err(PeerError::Open { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(5));
                opened = true;
                break;
            }
            Err(PeerError::Unreachable { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(opened, "the breaker never opened");
    let nobody = Peer::new(directory(&[]), "other", PeerSettings::default());
    assert!(matches!(
        nobody.get("/thing", None).await,
        Err(PeerError::NoInstance(_))
    ));
}
