//! The upstream connections of one worker thread: HTTP/1.1 keep-alive
//! connections to each instance, reused one request at a time.
//!
//! hyper-util's pooled client does this for any scheme and protocol, and per
//! request clones itself, hashes a pool key and spawns a task that waits for
//! the connection to become idle again. The gateway only speaks plain
//! HTTP/1.1 to instances it knows, so it keeps its own pool: a connection
//! goes back to its instance's idle list when the response body it carried
//! ends (the body hands it back), and is checked for readiness when it is
//! taken out.

use axum::body::Body;
use axum::http::uri::Authority;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// An idle connection unused for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per instance; more are closed as they come back.
const MAX_IDLE_PER_INSTANCE: usize = 256;

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made.
    Connect(String),
    /// The connection failed while the request was sent or answered.
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(cause) => write!(f, "cannot connect: {cause}"),
            Self::Http(err) => write!(f, "{err}"),
        }
    }
}

/// The connections of one worker thread (clones share them).
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connect_timeout: Duration,
    /// Idle connections by instance authority, most recently used last.
    /// Keyed by its text: `Authority` hashes byte by byte, lowercased.
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
    /// Whether this worker's task that closes expired connections runs.
    sweeping: AtomicBool,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                connect_timeout,
                idle: Mutex::new(HashMap::new()),
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request`, whose URI is in origin form and which has its `Host`
    /// header, to the instance at `authority`. A reused connection that
    /// turns out closed before the request went out is replaced by a new
    /// one; any other failure is the caller's to handle.
    pub async fn send(
        &self,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout(authority).await {
                Some(sender) => (sender, true),
                // Boxed: connecting is rare, and its future is large
                // enough to make every request's future costlier to move.
                None => (Box::pin(self.connect(authority)).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let home = Home {
                        sender,
                        pool: Arc::downgrade(&self.shared),
                        authority: authority.clone(),
                    };
                    return Ok(response.map(|body| PooledBody {
                        body,
                        home: Some(home),
                    }));
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Http(err.into_error())),
                },
            }
        }
    }

    /// An idle connection to `authority` that can take a request now.
    async fn checkout(&self, authority: &Authority) -> Option<SendRequest<Body>> {
        loop {
            // Expired ones are the sweeper's; a closed one is found here.
            let Idle { mut sender, .. } = self
                .shared
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(authority.as_str())?
                .pop()?;
            if sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // Handed back as its response body ended, a moment before its
            // connection finished with that response.
            let ready = tokio::time::timeout(self.shared.connect_timeout, sender.ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<Body>, SendError> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.shared.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| SendError::Connect(format!("no connection to {authority} in time")))?
        .map_err(|err| SendError::Connect(format!("{authority}: {err}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "upstream connection closed");
            }
        });
        if !self.shared.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.shared)));
        }
        Ok(sender)
    }
}

/// Closes idle connections that have expired, while the pool exists.
async fn sweep(pool: Weak<Shared>) {
    let mut every = tokio::time::interval(IDLE_TIMEOUT / 2);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for list in idle.values_mut() {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() <= IDLE_TIMEOUT);
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

/// Where a connection goes back to once its response body has ended.
struct Home {
    sender: SendRequest<Body>,
    pool: Weak<Shared>,
    authority: Authority,
}

impl Home {
    fn check_in(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if self.sender.is_closed() {
            return;
        }
        let mut idle = pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = match idle.get_mut(self.authority.as_str()) {
            Some(list) => list,
            None => idle.entry(self.authority.as_str().into()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_INSTANCE {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// A response body that hands its connection back to the pool once it has
/// been read to its end. Dropped before that, it takes the connection with
/// it: the rest of the response is still on the wire.
pub struct PooledBody {
    body: Incoming,
    home: Option<Home>,
}

impl PooledBody {
    fn ended(&mut self) {
        if let Some(home) = self.home.take() {
            home.check_in();
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.ended(),
            Some(Ok(_)) if self.body.is_end_stream() => self.ended(),
            Some(Ok(_)) => {}
            Some(Err(_)) => self.home = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing in it (204, 304, a HEAD, length 0) is never
        // polled: it ended as it began.
        if self.body.is_end_stream() {
            self.ended();
        }
    }
}
