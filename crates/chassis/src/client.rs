//! One HTTP client for every call a service makes to another address:
//! over TCP (reqwest) for `http://…`, or straight into a router of this
//! process for `local://…` (see [`super::local`]). Responses are read whole:
//! these calls carry small JSON documents (catalogs, keys, feed pages).

use crate::local;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the request failed: {0}")]
    Transport(String),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("unexpected body: {0}")]
    Body(String),
}

impl Error {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The connection never carried the request: safe to try elsewhere.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    fn from_reqwest(err: reqwest::Error, timeout: Option<Duration>) -> Self {
        if err.is_timeout() {
            Self::Timeout(timeout.unwrap_or_default())
        } else if err.is_connect() {
            Self::Connect(err.to_string())
        } else {
            Self::Transport(err.to_string())
        }
    }
}

/// A client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    timeout: Option<Duration>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Client {
    /// A client whose calls take at most `timeout` each, unless a call says
    /// otherwise.
    pub fn new(timeout: impl Into<Option<Duration>>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            http,
            timeout: timeout.into(),
        }
    }

    pub fn get(&self, url: impl Into<String>) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: impl Into<String>) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    pub fn put(&self, url: impl Into<String>) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    pub fn delete(&self, url: impl Into<String>) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    pub fn request(&self, method: Method, url: impl Into<String>) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: self.timeout,
        }
    }
}

/// One call being put together.
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Adds a header; a name or value that is not valid HTTP is left out.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), value);
        }
        self
    }

    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = serde_json::to_vec(body)
            .expect("wire types always serialize")
            .into();
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub async fn send(self) -> Result<Response, Error> {
        let timeout = self.timeout;
        let call = async move {
            match local::name_of(&self.url).map(str::to_owned) {
                Some(name) => self.send_local(name).await,
                None => self.send_http().await,
            }
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(Error::Timeout(limit))),
            None => call.await,
        }
    }

    async fn send_local(self, name: String) -> Result<Response, Error> {
        let path = self.url[local::SCHEME.len() + name.len()..].to_owned();
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        let mut request = Request::builder()
            .method(self.method)
            .uri(path)
            .body(Body::from(self.body))
            .map_err(|err| Error::Transport(err.to_string()))?;
        *request.headers_mut() = self.headers;
        if let Ok(host) = HeaderValue::from_str(&name) {
            request.headers_mut().insert(header::HOST, host);
        }
        let response = local::call(&name, request)
            .await
            .map_err(|err| Error::Connect(err.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|err| Error::Transport(err.to_string()))?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn send_http(self) -> Result<Response, Error> {
        let timeout = self.timeout;
        let response = self
            .client
            .http
            .request(self.method, &self.url)
            .headers(self.headers)
            .body(self.body)
            .send()
            .await
            .map_err(|err| Error::from_reqwest(err, timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|err| Error::from_reqwest(err, timeout))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// An error for 4xx and 5xx answers.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status.is_client_error() || self.status.is_server_error() {
            Err(Error::Status(self.status))
        } else {
            Ok(self)
        }
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|err| Error::Body(err.to_string()))
    }
}
