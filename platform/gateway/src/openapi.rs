//! `GET /api/openapi.json`: the public API of every service in one document.
//!
//! Each service serves its own document at `/openapi.json`; the gateway
//! fetches them from one instance each, keeps only the paths under the routes
//! that service owns (so internal endpoints never appear), merges paths and
//! component schemas, adds its own operations and the answers it can give
//! for any proxied one, and caches the result for a few seconds.

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
    let mut conflicts = Vec::new();
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
                match schemas.get(name) {
                    None => {
                        schemas.insert(name.clone(), schema.clone());
                    }
                    // Two services' schemas of one name must agree, or
                    // references to it would describe the wrong body.
                    Some(kept) if kept != schema => {
                        tracing::warn!(%service, schema = %name, "two services define different schemas of one name");
                        conflicts.push(format!("{service}:{name}"));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for item in paths.values_mut() {
        add_edge_answers(item);
    }
    paths.extend(own_paths());
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
    dure_chassis::openapi::complete(&mut doc);
    if !conflicts.is_empty() {
        doc["info"]["x-dure-conflicting-schemas"] = json!(conflicts);
    }
    if !missing.is_empty() {
        missing.sort();
        doc["info"]["x-dure-missing-services"] = json!(missing);
    }
    *cache = Some((Instant::now(), doc.clone()));
    doc
}

/// What the gateway itself can answer for any operation it proxies.
fn add_edge_answers(item: &mut Value) {
    let Some(item) = item.as_object_mut() else {
        return;
    };
    for (method, operation) in item.iter_mut() {
        if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
            continue;
        }
        for (status, description) in [
            (
                "429",
                "too many requests from this address (see `Retry-After`)",
            ),
            (
                "502",
                "the service answered with something that is not HTTP",
            ),
            (
                "503",
                "no instance of the service is available, its circuit breaker is open or its bulkhead is full (see `Retry-After`)",
            ),
            ("504", "the service did not answer in time"),
        ] {
            dure_chassis::openapi::add_problem_answer(operation, status, description);
        }
        if operation.get("requestBody").is_some() {
            dure_chassis::openapi::add_problem_answer(
                operation,
                "413",
                "the body is larger than the gateway accepts",
            );
        }
    }
}

/// The gateway's own operations.
fn own_paths() -> Map<String, Value> {
    let items = |schema: &str| json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}")}});
    let home = json!({
        "get": {
            "tags": ["gateway"],
            "summary": "The board's first screen in one call: notices, postings and the unread count.",
            "description": "Composed by the gateway from notice, posting and notification. A part whose service is down or slow is empty (or null) and its service is named in `degraded`; the answer is still 200.",
            "operationId": "home",
            "security": [{}, {"bearer": []}],
            "responses": {
                "200": {"description": "the composed first screen", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["notices", "postings", "unread_notifications", "degraded"],
                    "properties": {
                        "notices": items("Notice"),
                        "postings": items("Posting"),
                        "unread_notifications": {"type": ["integer", "null"], "minimum": 0,
                            "description": "null without a token"},
                        "degraded": {"type": "array", "items": {"type": "string"}}
                    }
                }}}}
            }
        }
    });
    let document = json!({
        "get": {
            "tags": ["gateway"],
            "summary": "This document: the public API of every service.",
            "operationId": "openapi",
            "responses": {
                "200": {"description": "an OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}}
            }
        }
    });
    Map::from_iter([
        ("/api/home".to_owned(), home),
        ("/api/openapi.json".to_owned(), document),
    ])
}
