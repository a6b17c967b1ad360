//! The registry's HTTP API (docs/api.md, "Internal API").

use crate::Registry;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dure_chassis::ApiError;
use dure_chassis::http::Json;
use dure_contracts::registry::{INDEX_HEADER, LeaseGranted, Registration};
use dure_contracts::{FieldError, Problem};
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

/// Long polls wait at most this long, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(300);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// `?index=N&wait=30s` of a watch.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    index: Option<u64>,
    wait: Option<String>,
}

impl WatchQuery {
    fn wait(&self) -> Result<Duration, ApiError> {
        match &self.wait {
            None => Ok(DEFAULT_WAIT),
            Some(text) => dure_chassis::config::parse_duration(text)
                .map(|wait| wait.min(MAX_WAIT))
                .map_err(|expected| ApiError::BadRequest(format!("`wait` must be {expected}"))),
        }
    }
}

/// Registers (or re-registers) an instance.
#[utoipa::path(post, path = "/v1/instances", tag = "registry", request_body = Registration,
    responses(
        (status = 201, body = LeaseGranted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(registry): State<Registry>,
    Json(registration): Json<Registration>,
) -> Result<(StatusCode, axum::Json<LeaseGranted>), ApiError> {
    validate(&registration)?;
    tracing::info!(
        service = %registration.service,
        instance_id = %registration.instance_id,
        address = %registration.address,
        "instance registered"
    );
    let ttl = {
        let mut leases = registry.leases.lock().await;
        leases.register(registration, Instant::now());
        registry.announce(leases.index());
        leases.ttl()
    };
    Ok((
        StatusCode::CREATED,
        // Rounded up: a client must never read a zero lease,
        // which it could not pace heartbeats by.
        axum::Json(LeaseGranted {
            lease_ttl_secs: ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
        }),
    ))
}

/// Renews an instance's lease; 404 tells it to register again.
#[utoipa::path(put, path = "/v1/instances/{instance_id}/heartbeat", tag = "registry",
    params(("instance_id" = String, Path)),
    responses(
        (status = 204, description = "lease renewed"),
        (status = 404, description = "no such lease: register again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn heartbeat(
    State(registry): State<Registry>,
    Path(instance_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match registry
        .leases
        .lock()
        .await
        .heartbeat(&instance_id, Instant::now())
    {
        crate::leases::Renewal::Renewed => Ok(StatusCode::NO_CONTENT),
        crate::leases::Renewal::Unknown => Err(ApiError::NotFound(
            "no lease for this instance; register again".into(),
        )),
    }
}

/// Removes an instance (graceful shutdown). Unknown ids are fine.
#[utoipa::path(delete, path = "/v1/instances/{instance_id}", tag = "registry",
    params(("instance_id" = String, Path)),
    responses((status = 204, description = "deregistered")))]
pub async fn deregister(
    State(registry): State<Registry>,
    Path(instance_id): Path<String>,
) -> StatusCode {
    let mut leases = registry.leases.lock().await;
    if leases.deregister(&instance_id) {
        tracing::info!(%instance_id, "instance deregistered");
        registry.announce(leases.index());
    }
    StatusCode::NO_CONTENT
}

/// Every service and its instances; with `index`, waits until anything
/// changes past it (or `wait` passes).
#[utoipa::path(get, path = "/v1/services", tag = "registry",
    params(("index" = Option<u64>, Query), ("wait" = Option<String>, Query, description = "e.g. 30s")),
    responses((status = 200, body = dure_contracts::registry::Catalog)))]
pub async fn catalog(
    State(registry): State<Registry>,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    let wait = query.wait()?;
    let (catalog, index) = registry
        .wait_for(query.index, wait, |leases| {
            (leases.catalog(), leases.index())
        })
        .await;
    Ok(with_index(axum::Json(catalog), index))
}

/// One service's instances; with `index`, waits until that set changes past it.
#[utoipa::path(get, path = "/v1/services/{name}", tag = "registry",
    params(("name" = String, Path), ("index" = Option<u64>, Query), ("wait" = Option<String>, Query)),
    responses((status = 200, body = dure_contracts::registry::ServiceInstances)))]
pub async fn service(
    State(registry): State<Registry>,
    Path(name): Path<String>,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    let wait = query.wait()?;
    let (instances, index) = registry
        .wait_for(query.index, wait, |leases| leases.service(&name))
        .await;
    Ok(with_index(axum::Json(instances), index))
}

fn with_index(body: impl IntoResponse, index: u64) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(INDEX_HEADER, HeaderValue::from(index));
    (headers, body).into_response()
}

fn validate(registration: &Registration) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let service_ok = !registration.service.is_empty()
        && registration.service.len() <= 64
        && registration
            .service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !service_ok {
        errors.push(FieldError::new(
            "service",
            "must be 1 to 64 characters of a-z, 0-9 and -",
        ));
    }
    let id = &registration.instance_id;
    if id.is_empty()
        || id.len() > 128
        || !id.chars().all(|c| c.is_ascii_graphic())
        || id.contains('/')
    {
        errors.push(FieldError::new(
            "instance_id",
            "must be 1 to 128 printable ASCII characters without /",
        ));
    }
    let address = &registration.address;
    // local:// names an instance inside the registry's own process
    // (single-process topology).
    let scheme_ok = ["http://", "https://", dure_chassis::local::SCHEME]
        .iter()
        .any(|scheme| address.starts_with(scheme));
    if !scheme_ok
        || address.len() > 256
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        errors.push(FieldError::new(
            "address",
            "must be an http://, https:// or local:// URL",
        ));
    }
    if registration.version.len() > 64 {
        errors.push(FieldError::new("version", "must be at most 64 characters"));
    }
    let metadata_size: usize = registration
        .metadata
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if registration.metadata.len() > 32 || metadata_size > 8192 {
        errors.push(FieldError::new(
            "metadata",
            "must be at most 32 entries and 8 KiB",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Every instance as a Prometheus HTTP service-discovery target group
/// (`http_sd_configs`), labelled with its service and instance id.
#[utoipa::path(get, path = "/v1/prometheus-targets", tag = "registry",
    responses((status = 200, description = "Prometheus HTTP SD target groups")))]
pub async fn prometheus_targets(State(registry): State<Registry>) -> axum::Json<serde_json::Value> {
    let catalog = registry.leases.lock().await.catalog();
    let groups: Vec<serde_json::Value> = catalog
        .services
        .iter()
        .flat_map(|service| service.instances.iter())
        .map(|instance| {
            let target = instance
                .address
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            serde_json::json!({
                "targets": [target],
                "labels": {"service": instance.service, "instance_id": instance.instance_id},
            })
        })
        .collect();
    axum::Json(serde_json::Value::Array(groups))
}
