//! The upstream of `bench/gateway`: `GET /api/bench` answers a small JSON
//! body, and `/internal/descriptor` tells the gateway it owns `/api/bench`.
//! `POST /v1/traces` takes OTLP exports and drops them, standing in for a
//! collector when the gateway's tracing overhead is measured. Plain axum, no
//! logging, so that the benchmark measures the proxies.
//!
//! `cargo run --release -p dure-gateway --example bench_upstream -- 127.0.0.1:9101`

use axum::Router;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::json;

/// Bytes of OTLP exports received, so the benchmark can show spans arrived.
static EXPORTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into());
    let app = Router::new()
        .route(
            "/api/bench",
            get(|| async {
                axum::Json(json!({"id": "01a20000-0000-7000-8000-000000000000", "title": "hello"}))
            }),
        )
        .route(
            "/v1/traces",
            // Counted as the chunks arrive and dropped: a stand-in for a
            // collector elsewhere should cost the shared CPUs as little as
            // it can, so no copy into one buffer first.
            post(|mut body: axum::body::Body| async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(chunk) = frame.data_ref() {
                        EXPORTED.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                }
                ([("content-type", "application/x-protobuf")], "")
            }),
        )
        .route(
            "/v1/traces/received-bytes",
            get(|| async {
                EXPORTED
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string()
            }),
        )
        .route(
            "/internal/descriptor",
            get(|| async {
                axum::Json(json!({"name": "bench", "version": "0", "routes": ["/api/bench"]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
