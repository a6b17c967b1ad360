//! Serving a dure process: the flags every process accepts, where it
//! listens ([`Listen`]: a port, or a name inside this process), and
//! [`serve`], which registers the instance once its app is ready, reports
//! registration in `/readyz`, and deregisters before draining on shutdown,
//! so the gateway stops routing to it first. Domain services get all of it
//! through `service::run`; the registry and the gateway call it
//! directly.

use crate::config::{ConfigError, ConfigFile, parse_duration};
use crate::discovery::{DiscoverySettings, Registrar};
use crate::http::{self, IpNet, ServiceApp, TrustedProxies};
use crate::local;
use crate::telemetry::LogFormat;
use dure_contracts::registry::Descriptor;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Flags (and env vars) every dure process accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Address to listen on [default: the service's own port on 127.0.0.1]
    #[arg(long, env = "DURE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json [default: auto]
    #[arg(long, env = "DURE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// How long in-flight requests may take to finish after SIGTERM [default: 10s]
    #[arg(long, env = "DURE_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Proxies whose X-Forwarded-For is believed, comma-separated networks [default: 127.0.0.0/8,::1]
    #[arg(
        long,
        env = "DURE_TRUSTED_PROXIES",
        value_name = "NETS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<IpNet>>,
}

/// [`ServiceArgs`] after layering and validation.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub trusted_proxies: TrustedProxies,
}

impl ServiceArgs {
    /// Layers these args over `file` over the defaults of a service that
    /// listens on `default_listen`.
    pub fn resolve(
        &self,
        file: &ConfigFile,
        default_listen: SocketAddr,
    ) -> Result<ServiceSettings, ConfigError> {
        let trusted = file.layer(
            "trusted_proxies",
            self.trusted_proxies.clone(),
            TrustedProxies::loopback().0,
        )?;
        Ok(ServiceSettings {
            listen: file.layer("listen", self.listen, default_listen)?,
            log_format: file.layer("log_format", self.log_format, LogFormat::Auto)?,
            shutdown_grace: file.layer(
                "shutdown_grace",
                self.shutdown_grace,
                Duration::from_secs(10),
            )?,
            trusted_proxies: TrustedProxies(trusted),
        })
    }
}

impl ServiceSettings {
    /// Settings for tests and embedding: any port on loopback.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Auto,
            shutdown_grace: Duration::from_secs(5),
            trusted_proxies: TrustedProxies::loopback(),
        }
    }
}

/// Where a process answers: a bound port, a name inside this process
/// (single-process topology), or both (the registry there, which operators
/// also reach on its port).
#[derive(Debug)]
pub struct Listen {
    tcp: Option<TcpListener>,
    in_process: Option<String>,
}

impl Listen {
    pub fn tcp(listener: TcpListener) -> Self {
        Self {
            tcp: Some(listener),
            in_process: None,
        }
    }

    /// Reached as `local://<name>` by the other services of this process.
    pub fn in_process(name: impl Into<String>) -> Self {
        Self {
            tcp: None,
            in_process: Some(name.into()),
        }
    }

    /// Also answers on `listener`.
    pub fn and_tcp(mut self, listener: TcpListener) -> Self {
        self.tcp = Some(listener);
        self
    }

    /// Serves `router` here until `shutdown` resolves (then as
    /// [`http::serve`] does on a port).
    pub async fn serve(
        self,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let binding = self
            .in_process
            .as_deref()
            .map(|name| local::bind(name, router.clone()))
            .transpose()?;
        match self.tcp {
            Some(listener) => http::serve(listener, router, shutdown, grace).await?,
            None => shutdown.await,
        }
        drop(binding);
        Ok(())
    }

    /// The address other services use: the in-process name if there is one.
    fn advertised(&self, discovery: &DiscoverySettings) -> std::io::Result<String> {
        match (&self.in_process, &self.tcp) {
            (Some(name), _) => Ok(local::address(name)),
            (None, Some(listener)) => Ok(discovery.advertised(listener.local_addr()?)),
            (None, None) => Err(std::io::Error::other("nowhere to listen")),
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (
            &self.in_process,
            self.tcp.as_ref().and_then(|l| l.local_addr().ok()),
        ) {
            (Some(name), Some(address)) => write!(f, "{}{name} and {address}", local::SCHEME),
            (Some(name), None) => write!(f, "{}{name}", local::SCHEME),
            (None, Some(address)) => write!(f, "{address}"),
            (None, None) => f.write_str("nowhere"),
        }
    }
}

/// Serves `app` on `listen` until `shutdown` resolves, registered in
/// discovery under `descriptor` while it runs.
pub async fn serve(
    descriptor: Descriptor,
    settings: &ServiceSettings,
    discovery: &DiscoverySettings,
    app: ServiceApp,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listen.advertised(discovery)?;
    let (router, stopped) = register(descriptor, discovery, app, address, shutdown);
    listen.serve(router, stopped, settings.shutdown_grace).await
}

/// Like [`serve`] on a port, with the caller's own server for the router
/// (the gateway's, which sends proxied requests past it). `server` gets the
/// listener, the router and a future that resolves once the process has
/// left discovery and should stop accepting.
pub async fn serve_with<S, Served>(
    descriptor: Descriptor,
    discovery: &DiscoverySettings,
    app: ServiceApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    server: S,
) -> anyhow::Result<()>
where
    S: FnOnce(TcpListener, axum::Router, futures_util::future::BoxFuture<'static, ()>) -> Served,
    Served: Future<Output = std::io::Result<()>>,
{
    let address = discovery.advertised(listener.local_addr()?);
    let (router, stopped) = register(descriptor, discovery, app, address, shutdown);
    server(listener, router, stopped).await?;
    Ok(())
}

/// Starts registering `app` at `address` once it is ready; returns its
/// router and a future that resolves, after `shutdown`, once the instance
/// has left discovery.
fn register(
    descriptor: Descriptor,
    discovery: &DiscoverySettings,
    app: ServiceApp,
    address: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (axum::Router, futures_util::future::BoxFuture<'static, ()>) {
    let registrar = Registrar::start(discovery, &descriptor, address, app.readiness_check());
    // Only services that own public routes need to describe them.
    let app = if descriptor.routes.is_empty() {
        app
    } else {
        app.descriptor(descriptor)
    };
    let app = app.registration(registrar.registered());
    let deregister_first = Box::pin(async move {
        shutdown.await;
        registrar.deregister().await;
    });
    (app.into_router(), deregister_first)
}
