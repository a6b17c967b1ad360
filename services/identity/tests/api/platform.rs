//! What every dure service serves around its API, seen through identity.

use crate::helpers::{Backend, assert_problem, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

dure_chassis::on_both_backends!(
    health_readiness_metrics_and_openapi,
    request_ids_are_kept_or_made,
    unknown_routes_and_methods_are_problems,
);

async fn health_readiness_metrics_and_openapi(backend: Backend) {
    let app = spawn_app(&backend).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    app.sign_up("ann").await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("http_server_requests_total{")
                && line.contains("http_route=\"/api/users\"")
                && line.contains("http_response_status_code=\"201\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_server_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    // SQLite reads and writes through pools of their own; Postgres shares one.
    let pools: &[&str] = match backend {
        Backend::Sqlite => &["read", "write"],
        Backend::Postgres(_) => &["shared"],
    };
    for pool in pools {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("db_pool_connections{")
                    && line.contains(&format!("pool=\"{pool}\""))),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("process_resident_memory_bytes "),
        "{metrics}"
    );

    let openapi: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/users",
        "/api/login",
        "/api/token/refresh",
        "/api/logout",
        "/api/user",
        "/api/users/{id}",
        "/api/.well-known/jwks.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    for method in ["get", "patch", "delete"] {
        assert!(
            openapi["paths"]["/api/user"][method].is_object(),
            "{method} /api/user"
        );
    }
}

async fn request_ids_are_kept_or_made(backend: Backend) {
    let app = spawn_app(&backend).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app
        .client
        .get(app.url("/api/nowhere"))
        .send()
        .await
        .unwrap();
    let made = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok());
    // A junk id is replaced, not echoed into logs and headers.
    let junk = "x".repeat(500);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", &junk)
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], junk.as_str());
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let app = spawn_app(&backend).await;
    assert_problem(
        app.client
            .get(app.url("/api/nowhere"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.client.put(app.url("/api/user")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}
