//! `GET /api/openapi.json`: the public API of every service in one document.
//!
//! Each service serves its own document at `/openapi.json`; the gateway
//! fetches them from one instance each, keeps only the paths under the routes
//! that service owns (so internal endpoints never appear), merges paths and
//! component schemas, and caches the result for a few seconds.

use crate::Gateway;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

const CACHE_FOR: Duration = Duration::from_secs(5);

pub async fn merged(gateway: &Gateway) -> Value {
    let mut cache = gateway.openapi_cache.lock().await;
    if let Some((at, doc)) = cache.as_ref()
        && at.elapsed() < CACHE_FOR
    {
        return doc.clone();
    }
    let upstreams = gateway.upstreams();
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut missing = Vec::new();
    for (service, endpoints) in upstreams.services() {
        let Some(endpoint) = endpoints.first() else {
            continue;
        };
        let url = format!("{}/openapi.json", endpoint.address);
        let fetched = async {
            gateway
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
        }
        .await;
        let Ok(doc) = fetched else {
            missing.push(service.to_owned());
            continue;
        };
        if let Some(service_paths) = doc["paths"].as_object() {
            for (path, item) in service_paths {
                if upstreams.route(path) == Some(service) {
                    paths.insert(path.clone(), item.clone());
                }
            }
        }
        if let Some(service_schemas) = doc["components"]["schemas"].as_object() {
            for (name, schema) in service_schemas {
                schemas
                    .entry(name.clone())
                    .or_insert_with(|| schema.clone());
            }
        }
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "dure", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The public API of every dure service, merged by the gateway."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    });
    if !missing.is_empty() {
        missing.sort();
        doc["info"]["x-dure-missing-services"] = json!(missing);
    }
    *cache = Some((Instant::now(), doc.clone()));
    doc
}
