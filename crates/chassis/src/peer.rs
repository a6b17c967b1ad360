//! Calling another service by name: discovery, resilience and propagation
//! on top of [`Client`](crate::client::Client), the client every call
//! between services goes through.
//!
//! A [`Peer`] stands for one service. Each call goes through that service's
//! bulkhead (refused at once when full) and circuit breaker (refused at once
//! while open), to an instance discovery knows that is not ejected, with a
//! timeout and the caller's `X-Request-Id`. A GET whose connection fails or
//! that is answered 502/503/504 is retried once on another instance, after a
//! jittered pause and only within the retry budget.

use crate::client::{Client, RequestBuilder, Response, StreamingResponse};
use crate::discovery::Directory;
use crate::resilience::{Breaker, BreakerSettings, Bulkhead, Ejection, Outcome, RetryBudget};
use crate::telemetry::trace;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How a peer is called.
#[derive(Debug, Clone, Copy)]
pub struct PeerSettings {
    pub timeout: Duration,
    pub max_concurrent: usize,
    pub breaker: BreakerSettings,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_concurrent: 64,
            breaker: BreakerSettings::default(),
        }
    }
}

/// Why a call to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0} has no instance")]
    NoInstance(String),
    #[error("too many calls to {0} are in flight")]
    Busy(String),
    #[error("{service} is failing; its circuit breaker is open")]
    Open {
        service: String,
        retry_after: Duration,
    },
    #[error("{service} did not answer in time")]
    Timeout { service: String },
    #[error("{service} could not be reached: {cause}")]
    Unreachable { service: String, cause: String },
}

/// A client for one other service.
#[derive(Debug)]
pub struct Peer {
    service: String,
    directory: Directory,
    client: Client,
    settings: PeerSettings,
    breaker: Breaker,
    bulkhead: Bulkhead,
    budget: RetryBudget,
    ejections: Mutex<HashMap<String, Arc<Ejection>>>,
}

impl Peer {
    pub fn new(directory: Directory, service: impl Into<String>, settings: PeerSettings) -> Self {
        let service = service.into();
        Self {
            breaker: Breaker::new(format!("peer:{service}"), settings.breaker),
            bulkhead: Bulkhead::new(format!("peer:{service}"), settings.max_concurrent),
            client: Client::new(settings.timeout),
            budget: RetryBudget::default(),
            ejections: Mutex::new(HashMap::new()),
            directory,
            service,
            settings,
        }
    }

    fn ejection(&self, instance_id: &str) -> Arc<Ejection> {
        let mut ejections = self
            .ejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ejections.entry(instance_id.to_owned()).or_default().clone()
    }

    /// An instance to call, not `exclude`, not ejected unless all are.
    fn pick(&self, exclude: Option<&str>) -> Option<(String, String)> {
        let instances: Vec<(String, String)> = self
            .directory
            .instances(&self.service)
            .into_iter()
            .filter(|i| exclude != Some(i.instance_id.as_str()))
            .map(|i| (i.instance_id, i.address))
            .collect();
        let healthy: Vec<&(String, String)> = instances
            .iter()
            .filter(|(id, _)| !self.ejection(id).is_ejected())
            .collect();
        let pool: Vec<&(String, String)> = if healthy.is_empty() {
            instances.iter().collect()
        } else {
            healthy
        };
        if pool.is_empty() {
            return None;
        }
        let index = rand::Rng::gen_range(&mut rand::thread_rng(), 0..pool.len());
        Some(pool[index].clone())
    }

    /// `GET path` on an instance of the service.
    pub async fn get(&self, path: &str, request_id: Option<&str>) -> Result<Response, PeerError> {
        let mut call = Call::new(Method::GET, path);
        if let Some(id) = request_id
            && let Ok(value) = HeaderValue::from_str(id)
        {
            call.headers.insert("x-request-id", value);
        }
        self.call(call).await
    }

    /// One call to an instance of the service. A GET is retried once on
    /// another instance when the first could not be reached or answered
    /// 502–504; other methods are sent once.
    pub async fn call(&self, call: Call) -> Result<Response, PeerError> {
        let Some(_slot) = self.bulkhead.try_enter() else {
            return Err(PeerError::Busy(self.service.clone()));
        };
        self.breaker.try_acquire().map_err(|open| PeerError::Open {
            service: self.service.clone(),
            retry_after: open.retry_after,
        })?;
        self.budget.deposit();
        let started = Instant::now();
        let result = self.call_with_retry(&call).await;
        let outcome = match &result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) if started.elapsed() >= self.settings.breaker.slow_call => Outcome::Slow,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        self.breaker.record(outcome);
        result
    }

    async fn call_with_retry(&self, call: &Call) -> Result<Response, PeerError> {
        let (first_id, first) = self
            .pick(None)
            .ok_or_else(|| PeerError::NoInstance(self.service.clone()))?;
        let outcome = self.send(&first_id, &first, call).await;
        let worth_retrying = match &outcome {
            Err(PeerError::Unreachable { .. }) => true,
            Ok(response) => matches!(response.status().as_u16(), 502..=504),
            Err(_) => false,
        };
        if !worth_retrying || call.method != Method::GET || !call.body.is_empty() {
            return outcome;
        }
        let Some((second_id, second)) = self.pick(Some(&first_id)) else {
            return outcome;
        };
        if !self.budget.try_withdraw() {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(5 + rand_below(20))).await;
        metrics::counter!("peer_retries_total", "service" => self.service.clone()).increment(1);
        self.send(&second_id, &second, call).await
    }

    async fn send(
        &self,
        instance_id: &str,
        address: &str,
        call: &Call,
    ) -> Result<Response, PeerError> {
        let (request, span) = self.request(instance_id, address, call);
        let started = Instant::now();
        let result = request.send().instrument(span).await;
        metrics::histogram!("peer_call_duration_seconds", "service" => self.service.clone())
            .record(started.elapsed().as_secs_f64());
        self.settle(instance_id, result, Response::status)
    }

    /// Opens a long-lived answer (Server-Sent Events) from an instance: the
    /// breaker is asked and told about its head, the instance's ejection
    /// too, but it holds no bulkhead slot and is never retried, since its
    /// body may stream for hours.
    pub async fn stream(&self, call: Call) -> Result<StreamingResponse, PeerError> {
        self.breaker.try_acquire().map_err(|open| PeerError::Open {
            service: self.service.clone(),
            retry_after: open.retry_after,
        })?;
        let Some((instance_id, address)) = self.pick(None) else {
            self.breaker.record(Outcome::Failure);
            return Err(PeerError::NoInstance(self.service.clone()));
        };
        let (request, span) = self.request(&instance_id, &address, &call);
        let result = request.send_streaming().instrument(span).await;
        let result = self.settle(&instance_id, result, |r: &StreamingResponse| r.status);
        self.breaker.record(match &result {
            Ok(r) if !r.status.is_server_error() => Outcome::Success,
            _ => Outcome::Failure,
        });
        result
    }

    /// `call` as a request to `address`, in a client span when traces are
    /// exported (its context in the request's `traceparent`).
    fn request(
        &self,
        instance_id: &str,
        address: &str,
        call: &Call,
    ) -> (RequestBuilder, tracing::Span) {
        let mut request = self
            .client
            .request(
                call.method.clone(),
                format!("{}{}", address.trim_end_matches('/'), call.path),
            )
            .headers(call.headers.clone());
        if !call.body.is_empty() {
            request = request.body(call.body.clone());
        }
        let span = if trace::exporting() {
            tracing::info_span!(
                "peer call",
                otel.name = %format_args!("{} {}", call.method, self.service),
                otel.kind = "client",
                peer.service = %self.service,
                server.address = %address,
                service.instance.id = %instance_id,
            )
        } else {
            tracing::Span::none()
        };
        let mut traced = HeaderMap::new();
        trace::inject_headers(&span, &mut traced);
        (request.headers(traced), span)
    }

    /// An instance's answer (of which `status` tells the status) or error,
    /// counted towards its ejection.
    fn settle<T>(
        &self,
        instance_id: &str,
        result: Result<T, crate::client::Error>,
        status: impl Fn(&T) -> axum::http::StatusCode,
    ) -> Result<T, PeerError> {
        let ejection = self.ejection(instance_id);
        match result {
            Ok(answer) => {
                if status(&answer).is_server_error() {
                    ejection.failure();
                } else {
                    ejection.success();
                }
                Ok(answer)
            }
            Err(err) if err.is_timeout() => {
                ejection.failure();
                Err(PeerError::Timeout {
                    service: self.service.clone(),
                })
            }
            Err(err) => {
                ejection.failure();
                Err(PeerError::Unreachable {
                    service: self.service.clone(),
                    cause: err.to_string(),
                })
            }
        }
    }
}

/// A request to a peer: method, path (with query), headers and body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// With `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            self.headers.insert(header::AUTHORIZATION, value);
        }
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// With a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = serde_json::to_vec(body)
            .expect("wire types always serialize")
            .into();
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }
}

fn rand_below(n: u64) -> u64 {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0..n.max(1))
}
