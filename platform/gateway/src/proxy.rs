//! Forwarding one request to one service.
//!
//! Bodies stream both ways (a Server-Sent Events response passes through as
//! it is produced). Hop-by-hop headers (RFC 9110 §7.6.1) are dropped, the
//! client's address is added to `X-Forwarded-For` and the request id is kept.
//! The timeout covers the wait for the response head, not the body, so long
//! streams are not cut. A request whose connection failed (refused, or reset
//! because the instance died) is retried once on another instance when that
//! is safe: an idempotent method with no body.

use crate::pool::SendError;
use crate::upstreams::{Endpoint, pick};
use crate::{Gateway, GatewayError};
use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::PathAndQuery;
use axum::response::Response;
use dure_chassis::local;
use dure_chassis::telemetry::trace::ClientSpan;
use http_body_util::Limited;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Hop-by-hop headers: they describe one connection, not the message.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is one of [`HOP_BY_HOP`] (one match on the text rather
/// than a comparison with each).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over their few names is cheaper
    // than looking up each hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

fn has_no_body(headers: &HeaderMap) -> bool {
    let length_zero = headers
        .get(header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0");
    length_zero && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// The address at the other end of a client connection, and that address
/// as `X-Forwarded-For` writes it (made once per connection).
#[derive(Debug, Clone)]
pub struct ClientIp {
    pub ip: IpAddr,
    header: HeaderValue,
}

impl ClientIp {
    pub fn new(ip: IpAddr) -> Self {
        let header =
            HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value");
        Self { ip, header }
    }
}

/// Forwards `request` to an instance of `service`.
pub async fn forward(
    gateway: &Gateway,
    service: &str,
    endpoints: &[Arc<Endpoint>],
    peer: Option<&ClientIp>,
    request: Request,
    deadline: Option<Duration>,
) -> Result<Response, GatewayError> {
    let (mut parts, body) = request.into_parts();
    if let Some(length) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > gateway.config.body_limit
    {
        return Err(GatewayError::PayloadTooLarge);
    }
    let retryable = is_idempotent(&parts.method) && has_no_body(&parts.headers);
    // A declared length was checked above and hyper holds the body to it;
    // only a chunked body of unknown length needs counting on the way.
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);

    strip_hop_by_hop(&mut parts.headers);
    let original_host = parts.headers.remove(header::HOST);
    if let Some(host) = original_host
        && !parts.headers.contains_key(&X_FORWARDED_HOST)
    {
        parts.headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    let trusted = gateway.config.trusts(peer.map(|p| p.ip));
    set_forwarded_for(&mut parts.headers, peer, trusted);
    parts
        .headers
        .entry(X_FORWARDED_PROTO.clone())
        .or_insert(HeaderValue::from_static("http"));

    let timeout = deadline.map_or_else(
        || gateway.config.timeout_for(service),
        |d| d.min(gateway.config.timeout_for(service)),
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let body = if chunked {
        Body::new(Limited::new(body, gateway.config.body_limit))
    } else {
        body
    };

    let first = pick(endpoints, None).ok_or(GatewayError::NoInstance)?;
    let head = retryable.then(|| parts.clone());
    let outcome = send(gateway, &first, &path_and_query, parts, body, timeout).await;
    // Worth another instance: the connection failed, or the instance said it
    // is overloaded or its own upstream failed (502/503/504).
    let cause = match &outcome {
        Err(Attempt::NotConnected(cause)) => cause.clone(),
        Ok(response) if matches!(response.status().as_u16(), 502..=504) => {
            format!("answered {}", response.status())
        }
        _ => return outcome.map_err(Attempt::into_error),
    };
    let second = pick(endpoints, Some(&first));
    let (Some(head), Some(second)) = (head, second) else {
        return outcome.map_err(Attempt::into_error);
    };
    if !gateway.retry_budget.try_withdraw() {
        return outcome.map_err(Attempt::into_error);
    }
    tracing::info!(service, failed = %first.instance_id, %cause, retry = %second.instance_id, "retrying on another instance");
    metrics::counter!("gateway_retries_total", "service" => service.to_owned()).increment(1);
    // A little jitter, so that retries from many clients do not arrive as one.
    tokio::time::sleep(Duration::from_millis(5 + rand::random::<u64>() % 20)).await;
    send(
        gateway,
        &second,
        &path_and_query,
        head,
        Body::empty(),
        timeout,
    )
    .await
    .map_err(Attempt::into_error)
}

/// Appends the connection's peer to `X-Forwarded-For` when the peer is a
/// trusted proxy in front of the gateway; otherwise replaces whatever the
/// client claimed with the peer's address.
fn set_forwarded_for(headers: &mut HeaderMap, peer: Option<&ClientIp>, trusted: bool) {
    let Some(peer) = peer else { return };
    let prior = if trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        String::new()
    };
    let value = if prior.is_empty() {
        peer.header.clone()
    } else {
        HeaderValue::from_str(&format!("{prior}, {}", peer.ip))
            .unwrap_or_else(|_| peer.header.clone())
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

enum Attempt {
    /// The connection failed (refused or reset): safe to send an idempotent,
    /// bodiless request elsewhere.
    NotConnected(String),
    Failed(GatewayError),
}

impl Attempt {
    fn into_error(self) -> GatewayError {
        match self {
            Self::NotConnected(cause) => GatewayError::Unreachable(cause),
            Self::Failed(err) => err,
        }
    }
}

async fn send(
    gateway: &Gateway,
    endpoint: &Arc<Endpoint>,
    path_and_query: &PathAndQuery,
    mut parts: axum::http::request::Parts,
    body: Body,
    timeout: Duration,
) -> Result<Response, Attempt> {
    if let Some(name) = &endpoint.in_process {
        return send_in_process(endpoint, name, path_and_query, parts, body, timeout).await;
    }
    let target = endpoint
        .target()
        .and_then(|target| Some((target, target.uri(path_and_query)?)));
    let Some((target, uri)) = target else {
        return Err(Attempt::Failed(GatewayError::Unreachable(format!(
            "the address of {} is not a plain http:// URL",
            endpoint.instance_id
        ))));
    };
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    parts.headers.insert(header::HOST, target.host.clone());
    exchange(endpoint, parts, body, timeout, |request| async {
        gateway
            .pool
            .send(&target.authority, request)
            .await
            .map_err(|err| match classify(err) {
                GatewayError::Unreachable(cause) => Attempt::NotConnected(cause),
                other => Attempt::Failed(other),
            })
    })
    .await
}

/// [`send`] to an instance in this process: its router is called directly.
async fn send_in_process(
    endpoint: &Arc<Endpoint>,
    name: &str,
    path_and_query: &PathAndQuery,
    mut parts: axum::http::request::Parts,
    body: Body,
    timeout: Duration,
) -> Result<Response, Attempt> {
    parts.uri = axum::http::Uri::from(path_and_query.clone());
    if let Ok(host) = HeaderValue::from_str(name) {
        parts.headers.insert(header::HOST, host);
    }
    exchange(endpoint, parts, body, timeout, |request| async move {
        local::call(name, request)
            .await
            .map_err(|not_bound| Attempt::NotConnected(not_bound.to_string()))
    })
    .await
}

/// One exchange with `endpoint` through `call`, with what every upstream
/// call has: its client span (lasting until the response head is in), the
/// timeout, the in-flight count, the duration metric and the outcome for
/// outlier ejection.
async fn exchange<B, F>(
    endpoint: &Arc<Endpoint>,
    mut parts: axum::http::request::Parts,
    body: Body,
    timeout: Duration,
    call: impl FnOnce(axum::http::Request<Body>) -> F,
) -> Result<Response, Attempt>
where
    F: Future<Output = Result<axum::http::Response<B>, Attempt>>,
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let mut span = upstream_span(&mut parts, endpoint);
    let request = axum::http::Request::from_parts(parts, body);
    let _in_flight = endpoint.start();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, call(request)).await;
    match &result {
        Ok(Ok(response)) => span.response_status(response.status().as_u16()),
        _ => span.fail(),
    }
    drop(span);
    endpoint.duration.record(started.elapsed().as_secs_f64());
    let response = match result {
        Err(_) => {
            endpoint_failed(endpoint);
            return Err(Attempt::Failed(GatewayError::Timeout));
        }
        Ok(Err(attempt)) => {
            endpoint_failed(endpoint);
            return Err(attempt);
        }
        Ok(Ok(response)) => response,
    };
    if response.status().is_server_error() {
        endpoint_failed(endpoint);
    } else {
        endpoint.ejection.success();
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The client span of one upstream call, whose context the request carries
/// on as `traceparent`; nothing unless traces are exported.
fn upstream_span(parts: &mut axum::http::request::Parts, endpoint: &Endpoint) -> ClientSpan {
    let method = parts.method.as_str();
    ClientSpan::start(
        &mut parts.headers,
        || [method, " ", &endpoint.service].concat(),
        &endpoint.span_attributes,
    )
}

fn endpoint_failed(endpoint: &Endpoint) {
    if endpoint.ejection.failure() {
        tracing::warn!(service = %endpoint.service, instance = %endpoint.instance_id, "instance ejected after consecutive failures");
        metrics::counter!("gateway_ejections_total", "service" => endpoint.service.clone())
            .increment(1);
    }
}

/// A request body over the limit surfaces as a client error deep in the
/// chain; anything else is the upstream's failure.
fn classify(err: SendError) -> GatewayError {
    let SendError::Http(err) = err else {
        return GatewayError::Unreachable(err.to_string());
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return GatewayError::PayloadTooLarge;
        }
        source = cause.source();
    }
    GatewayError::Unreachable(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn the_quick_check_knows_every_hop_by_hop_name() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop(&header::ACCEPT));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-request-id")));
    }

    #[test]
    fn forwarded_for_is_replaced_unless_trusted() {
        let client = ClientIp::new("203.0.113.5".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        headers.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        set_forwarded_for(&mut headers, Some(&client), false);
        assert_eq!(headers.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.5");
        headers.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        set_forwarded_for(&mut headers, Some(&client), true);
        assert_eq!(headers[&X_FORWARDED_FOR], "1.1.1.1, 203.0.113.5");
    }
}
