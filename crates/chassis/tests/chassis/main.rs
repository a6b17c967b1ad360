//! Chassis behaviour every service inherits, against real sockets.

mod peer;

use axum::Router;
use axum::routing::get;
use dure_chassis::auth::TokenVerifier;
use dure_chassis::http::ServiceApp;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(dure_chassis::http::serve(
        listener,
        app,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    url
}

#[tokio::test]
async fn a_panicking_handler_answers_an_opaque_500_problem() {
    let api = Router::new().route(
        "/boom",
        get(|| async {
            if true {
                panic!("secret internal detail");
            }
            "unreachable"
        }),
    );
    let url = serve(ServiceApp::new(api).into_router()).await;
    let response = reqwest::get(format!("{url}/boom")).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.text().await.unwrap();
    assert!(!body.contains("secret"), "{body}");
    // The server is still there.
    assert_eq!(
        reqwest::get(format!("{url}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn in_flight_requests_finish_after_the_shutdown_signal() {
    let api = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dure_chassis::http::serve(
        listener,
        ServiceApp::new(api).into_router(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let request = tokio::spawn(reqwest::get(format!("{url}/slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{url}/slow")).await.is_err(),
        "new requests are refused"
    );
}

#[tokio::test]
async fn unknown_key_ids_refetch_the_jwks_at_most_once_per_interval() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let jwks = Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(serde_json::json!({"keys": []})) }
        }),
    );
    let url = serve(jwks).await;
    let verifier = TokenVerifier::from_jwks_url(format!("{url}/jwks"));
    // Well-formed EdDSA headers naming keys nobody has.
    for kid in ["made-up-1", "made-up-2", "made-up-3"] {
        let header = base64_url(&format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#));
        let token = format!("{header}.{}.{}", base64_url("{}"), base64_url("sig"));
        let err = verifier.verify(&token).await.unwrap_err();
        assert_eq!(err.status(), 401);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
