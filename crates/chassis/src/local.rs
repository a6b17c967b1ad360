//! Services of this process, reached without a socket.
//!
//! In the single-process topology each service binds its router here under
//! its name instead of on a port, and is advertised as `local://<name>`.
//! A call to such an address runs the router as a tower `Service` on the
//! runtime the service was bound on: the request passes through exactly the
//! layers it would over HTTP (request id, spans, auth, body limit), only the
//! bytes never leave the process.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, PoisonError, RwLock};
use tower::ServiceExt;

/// The scheme of in-process addresses.
pub const SCHEME: &str = "local://";

/// What an in-process caller looks like to the called service: a loopback
/// peer, trusted like a proxy on the same machine.
const IN_PROCESS_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

struct Bound {
    router: Router,
    runtime: tokio::runtime::Handle,
}

static SERVICES: LazyLock<RwLock<HashMap<String, Bound>>> = LazyLock::new(Default::default);

/// `local://<name>`.
pub fn address(name: &str) -> String {
    format!("{SCHEME}{name}")
}

/// A router bound under a name; unbound when dropped, after which calls to
/// it fail as calls to a stopped process would.
#[derive(Debug)]
pub struct Binding {
    name: String,
}

/// Binds `router` under `name`, on the current runtime.
pub fn bind(name: &str, router: Router) -> anyhow::Result<Binding> {
    let mut services = SERVICES.write().unwrap_or_else(PoisonError::into_inner);
    anyhow::ensure!(
        !services.contains_key(name),
        "{name} is already bound in this process"
    );
    services.insert(
        name.to_owned(),
        Bound {
            router,
            runtime: tokio::runtime::Handle::current(),
        },
    );
    Ok(Binding {
        name: name.to_owned(),
    })
}

impl Drop for Binding {
    fn drop(&mut self) {
        SERVICES
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// No service of that name is bound in this process (now).
#[derive(Debug, thiserror::Error)]
#[error("no service {0:?} in this process")]
pub struct NotBound(pub String);

/// Calls the service bound as `name` with `request`.
pub async fn call(name: &str, mut request: Request<Body>) -> Result<Response<Body>, NotBound> {
    let (router, runtime) = {
        let services = SERVICES.read().unwrap_or_else(PoisonError::into_inner);
        let bound = services
            .get(name)
            .ok_or_else(|| NotBound(name.to_owned()))?;
        (bound.router.clone(), bound.runtime.clone())
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(IN_PROCESS_PEER));
    // On the service's own runtime: its database connections and tasks live
    // there, whichever runtime the caller is on (the gateway has one per core).
    let response = runtime.spawn(router.oneshot(request)).await;
    match response {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(never)) => match never {},
        // The runtime is shutting down: the service is gone.
        Err(_) => Err(NotBound(name.to_owned())),
    }
}

/// Whether `address` is an in-process one; its name if so.
pub fn name_of(address: &str) -> Option<&str> {
    let rest = address.strip_prefix(SCHEME)?;
    Some(rest.split('/').next().unwrap_or(rest))
}
