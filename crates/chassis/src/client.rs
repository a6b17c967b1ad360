//! One HTTP client for every call a service makes to another address:
//! over TCP (reqwest) for `http://…`, or straight into a router of this
//! process for `local://…` (see [`super::local`]). Responses are read whole:
//! these calls carry small JSON documents (catalogs, keys, feed pages);
//! [`RequestBuilder::send_streaming`] is for the one kind of answer that is
//! not (a stream of Server-Sent Events), whose body is passed on as it comes.

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

    /// Sends the request and reads the whole answer, both within the timeout.
    pub async fn send(self) -> Result<Response, Error> {
        let timeout = self.timeout;
        within(timeout, async move {
            let head = self.head().await?;
            let body = head
                .body
                .collect()
                .await
                .map_err(|err| Error::Transport(err.to_string()))?
                .to_bytes();
            Ok(Response {
                status: head.status,
                headers: head.headers,
                body,
            })
        })
        .await
    }

    /// Sends the request and answers as soon as the response's head has
    /// arrived, its body streaming on as the other side writes it (a stream
    /// of Server-Sent Events). The timeout bounds the connection and the
    /// head only: the body may go on for as long as both sides keep it open.
    pub async fn send_streaming(self) -> Result<StreamingResponse, Error> {
        let timeout = self.timeout;
        within(timeout, self.head()).await
    }

    /// The answer's head, its body still to come: from a router of this
    /// process, or over TCP.
    async fn head(self) -> Result<StreamingResponse, Error> {
        match local::name_of(&self.url).map(str::to_owned) {
            Some(name) => {
                let request = self.local_request(&name)?;
                let response = local::call(&name, request)
                    .await
                    .map_err(|err| Error::Connect(err.to_string()))?;
                let (parts, body) = response.into_parts();
                Ok(StreamingResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            }
            None => self.stream_http().await,
        }
    }

    async fn stream_http(self) -> Result<StreamingResponse, Error> {
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
        // Chunk by chunk as they arrive; the stream ends after the first error.
        let chunks = futures_util::stream::unfold(Some(response), |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        });
        Ok(StreamingResponse {
            status,
            headers,
            body: Body::from_stream(chunks),
        })
    }

    /// The request as a router of this process takes it.
    fn local_request(self, name: &str) -> Result<Request<Body>, Error> {
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
        if let Ok(host) = HeaderValue::from_str(name) {
            request.headers_mut().insert(header::HOST, host);
        }
        Ok(request)
    }
}

/// `call` within `timeout`, if there is one.
async fn within<T>(
    timeout: Option<Duration>,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(Error::Timeout(limit))),
        None => call.await,
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

/// An answer whose body streams: see [`RequestBuilder::send_streaming`].
#[derive(Debug)]
pub struct StreamingResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A body that sends a chunk at once and another after `pause`.
    fn slow_stream(pause: Duration) -> axum::Router {
        axum::Router::new().route(
            "/stream",
            axum::routing::get(move || async move {
                let chunks = futures_util::stream::iter(["first ", "second"]).then(
                    move |chunk| async move {
                        if chunk == "second" {
                            tokio::time::sleep(pause).await;
                        }
                        Ok::<_, std::convert::Infallible>(chunk)
                    },
                );
                Body::from_stream(chunks)
            }),
        )
    }

    async fn read_all(body: Body) -> String {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_streaming_body_outlives_the_timeout_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, slow_stream(Duration::from_millis(400))).into_future());
        let client = Client::new(Duration::from_millis(200));
        let response = client
            .get(format!("http://{address}/stream"))
            .send_streaming()
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(read_all(response.body).await, "first second");
        // The whole-answer call is bounded by the same timeout.
        let whole = client.get(format!("http://{address}/stream")).send().await;
        assert!(whole.is_err_and(|err| err.is_timeout()));
    }

    #[tokio::test]
    async fn a_streaming_body_comes_from_a_router_of_this_process() {
        let _binding =
            local::bind("streaming-test", slow_stream(Duration::from_millis(50))).unwrap();
        let response = Client::new(Duration::from_millis(200))
            .get("local://streaming-test/stream")
            .send_streaming()
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(read_all(response.body).await, "first second");
        let refused = Client::new(Duration::from_millis(200))
            .get("local://nobody-here/stream")
            .send_streaming()
            .await;
        assert!(refused.is_err_and(|err| err.is_connect()));
    }
}
