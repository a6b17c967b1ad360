//! Finding other services, and being found.
//!
//! Three sources of truth, chosen by configuration:
//! - **registry** (`DURE_REGISTRY_URL`): instances register themselves and
//!   heartbeat ([`Registrar`]); clients watch the registry's catalog with a
//!   long poll ([`Directory`]). When the registry is unreachable, clients keep
//!   the last known catalog and retry quietly with backoff; instances keep
//!   heartbeating and register again when told their lease is gone.
//! - **static** (`DURE_PEERS=identity=http://…,posting=http://…`): a fixed
//!   list; a name may repeat for several instances.
//! - **dns** (`DURE_DISCOVERY=dns` with `DURE_PEERS`): each peer's host name
//!   is resolved every few seconds and every address it yields is an
//!   instance, as with a Kubernetes headless Service.
//!
//! For static and DNS peers the public routes a service owns are read from
//! its `/internal/descriptor`; registered instances carry them in metadata.

use crate::client::Client;
use crate::config::{ConfigError, ConfigFile, parse_duration};
use crate::http::Readiness;
use crate::local;
use dure_contracts::registry::{
    Catalog, Descriptor, INDEX_HEADER, Instance, LeaseGranted, ROUTES_KEY, Registration,
    ServiceInstances,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Flags for services that register themselves or look others up.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiscoveryArgs {
    /// The registry to register with and discover from, e.g. http://127.0.0.1:8761
    #[arg(long, env = "DURE_REGISTRY_URL", value_name = "URL")]
    pub registry_url: Option<String>,
    /// Static peers instead of a registry: name=url pairs, comma-separated
    #[arg(long, env = "DURE_PEERS", value_name = "PEERS")]
    pub peers: Option<String>,
    /// Where instances come from: registry, static, dns or none [default: registry if a registry URL is set, else static]
    #[arg(long, env = "DURE_DISCOVERY", value_name = "SOURCE")]
    pub discovery: Option<String>,
    /// The URL other processes reach this instance at [default: http://<listen address>]
    #[arg(long, env = "DURE_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// How often to heartbeat the registry [default: 5s]
    #[arg(long, env = "DURE_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
}

/// Where instances come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No discovery: the service runs alone.
    None,
    Registry(String),
    /// Fixed `(service, base URL)` pairs.
    Static(Vec<(String, String)>),
    /// `(service, base URL)` pairs whose hosts are re-resolved.
    Dns(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    pub source: Source,
    pub advertise_url: Option<String>,
    pub heartbeat_interval: Duration,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            source: Source::None,
            advertise_url: None,
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

fn invalid(key: &str, expected: &str, value: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        origin: "configuration".into(),
        expected: expected.into(),
        value: value.into(),
    }
}

fn parse_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() > 8;
    let in_process = local::name_of(url).is_some_and(|name| !name.is_empty());
    if ok || in_process {
        Ok(url.to_owned())
    } else {
        Err(invalid(key, "an http:// URL", url))
    }
}

/// Parses `identity=http://a:1,posting=http://b:2`.
pub fn parse_peers(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, url) = pair
                .split_once('=')
                .ok_or_else(|| invalid("peers", "name=url pairs separated by commas", pair))?;
            Ok((name.trim().to_owned(), parse_url("peers", url)?))
        })
        .collect()
}

impl DiscoveryArgs {
    pub fn resolve(&self, file: &ConfigFile) -> Result<DiscoverySettings, ConfigError> {
        let registry = file.layer_opt::<String>("registry_url", self.registry_url.clone())?;
        let peers = file.layer_opt::<String>("peers", self.peers.clone())?;
        let kind = file.layer_opt::<String>("discovery", self.discovery.clone())?;
        let kind = kind.unwrap_or_else(|| {
            if registry.is_some() {
                "registry".into()
            } else {
                "static".into()
            }
        });
        let source = match kind.as_str() {
            "registry" => match registry {
                Some(url) => Source::Registry(parse_url("registry_url", &url)?),
                None => {
                    return Err(invalid(
                        "registry_url",
                        "a registry URL for discovery=registry",
                        "",
                    ));
                }
            },
            "static" => match peers {
                Some(peers) => Source::Static(parse_peers(&peers)?),
                None => Source::None,
            },
            "dns" => Source::Dns(parse_peers(peers.as_deref().unwrap_or_default())?),
            "none" => Source::None,
            other => return Err(invalid("discovery", "registry, static, dns or none", other)),
        };
        let advertise_url = file
            .layer_opt::<String>("advertise_url", self.advertise_url.clone())?
            .map(|url| parse_url("advertise_url", &url))
            .transpose()?;
        let heartbeat_interval = file.layer(
            "heartbeat_interval",
            self.heartbeat_interval,
            Duration::from_secs(5),
        )?;
        Ok(DiscoverySettings {
            source,
            advertise_url,
            heartbeat_interval,
        })
    }
}

impl DiscoverySettings {
    /// The URL this instance is reached at.
    pub fn advertised(&self, listening: SocketAddr) -> String {
        if let Some(url) = &self.advertise_url {
            return url.clone();
        }
        let mut address = listening;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    }
}

fn http_client(timeout: Duration) -> Client {
    Client::new(timeout)
}

/// Doubles a retry delay up to a cap, with ±25 % jitter so a fleet does not
/// retry in lockstep.
fn backoff(current: Duration, cap: Duration) -> Duration {
    let next = (current * 2).min(cap);
    let jitter = (rand_fraction() - 0.5) * 0.5;
    next.mul_f64(1.0 + jitter)
}

fn rand_fraction() -> f64 {
    // The low bits of a v4 UUID are as random as we need for jitter.
    f64::from(uuid::Uuid::new_v4().as_u128() as u32) / f64::from(u32::MAX)
}

/// Keeps this instance registered while it runs.
pub struct Registrar {
    registered: watch::Receiver<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    deregistration: Option<(Client, String)>,
}

impl Registrar {
    /// Starts registering once `ready` passes; without a registry, the
    /// instance counts as registered at once.
    pub fn start(
        settings: &DiscoverySettings,
        descriptor: &Descriptor,
        address: String,
        ready: Option<Readiness>,
    ) -> Self {
        let Source::Registry(registry) = &settings.source else {
            return Self {
                registered: watch::channel(true).1,
                task: None,
                deregistration: None,
            };
        };
        let registration = Registration {
            service: descriptor.name.clone(),
            instance_id: crate::telemetry::instance_id(&descriptor.name).unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    descriptor.name,
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )
            }),
            address,
            version: descriptor.version.clone(),
            metadata: BTreeMap::from([(ROUTES_KEY.to_owned(), descriptor.routes.join(","))]),
        };
        let client = http_client(Duration::from_secs(3));
        let (registered_tx, registered) = watch::channel(false);
        let delete_url = format!("{registry}/v1/instances/{}", registration.instance_id);
        let task = tokio::spawn(keep_registered(
            client.clone(),
            registry.clone(),
            registration,
            settings.heartbeat_interval,
            ready,
            registered_tx,
        ));
        Self {
            registered,
            task: Some(task),
            deregistration: Some((client, delete_url)),
        }
    }

    /// Becomes true once the first registration succeeded, and stays true.
    pub fn registered(&self) -> watch::Receiver<bool> {
        self.registered.clone()
    }

    /// Stops heartbeating and removes the lease, so clients stop choosing
    /// this instance before it drains.
    pub async fn deregister(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some((client, url)) = self.deregistration.take() {
            match client.delete(&url).send().await {
                Ok(_) => tracing::info!("deregistered from the registry"),
                Err(err) => {
                    tracing::warn!(error = %err, "could not deregister; the lease will expire")
                }
            }
        }
    }
}

async fn keep_registered(
    client: Client,
    registry: String,
    registration: Registration,
    interval: Duration,
    ready: Option<Readiness>,
    registered: watch::Sender<bool>,
) {
    // Register only once the service itself can serve.
    if let Some(ready) = ready {
        while ready().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let heartbeat_url = format!(
        "{registry}/v1/instances/{}/heartbeat",
        registration.instance_id
    );
    let mut need_registration = true;
    let mut retry = Duration::from_millis(100);
    let mut outage_reported = false;
    loop {
        let result = if need_registration {
            register(&client, &registry, &registration).await
        } else {
            heartbeat(&client, &heartbeat_url).await
        };
        match result {
            Ok(Beat::Registered(ttl)) => {
                tracing::info!(instance_id = %registration.instance_id, address = %registration.address, "registered with the registry");
                registered.send_replace(true);
                need_registration = false;
                outage_reported = false;
                retry = Duration::from_millis(100);
                // Never heartbeat slower than a third of the lease.
                let pace = interval.min(ttl / 3).max(Duration::from_millis(50));
                tokio::time::sleep(pace).await;
            }
            Ok(Beat::Renewed) => {
                outage_reported = false;
                tokio::time::sleep(interval).await;
            }
            Ok(Beat::LeaseGone) => {
                tracing::info!("the registry lost this lease; registering again");
                need_registration = true;
            }
            Err(err) => {
                if !outage_reported {
                    tracing::warn!(error = %err, "registry unreachable; will keep trying");
                    outage_reported = true;
                }
                tokio::time::sleep(retry).await;
                retry = backoff(retry, interval);
            }
        }
    }
}

enum Beat {
    Registered(Duration),
    Renewed,
    LeaseGone,
}

async fn register(
    client: &Client,
    registry: &str,
    registration: &Registration,
) -> anyhow::Result<Beat> {
    let response = client
        .post(format!("{registry}/v1/instances"))
        .json(registration)
        .send()
        .await?
        .error_for_status()?;
    let lease: LeaseGranted = response.json()?;
    Ok(Beat::Registered(Duration::from_secs(
        lease.lease_ttl_secs.max(1),
    )))
}

async fn heartbeat(client: &Client, url: &str) -> anyhow::Result<Beat> {
    let response = client.put(url).send().await?;
    if response.status() == axum::http::StatusCode::NOT_FOUND {
        return Ok(Beat::LeaseGone);
    }
    response.error_for_status()?;
    Ok(Beat::Renewed)
}

/// The instances of every service, as currently known; cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    catalog: watch::Receiver<Arc<Catalog>>,
    /// True once the source has answered at least once.
    loaded: watch::Receiver<bool>,
    /// Held for fixed directories, so receivers never see the channel close.
    _fixed: Option<Arc<watch::Sender<Arc<Catalog>>>>,
    /// The task keeping the catalog fresh, stopped with the last clone (a
    /// service stopped inside a longer-lived process leaves nothing behind).
    _source: Option<Arc<AbortOnDrop>>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Directory {
    /// Starts keeping the catalog fresh from `settings`' source.
    pub fn start(settings: &DiscoverySettings) -> Self {
        let (tx, catalog) = watch::channel(Arc::new(Catalog::default()));
        let (loaded_tx, loaded) = watch::channel(false);
        let source = match &settings.source {
            Source::None => {
                loaded_tx.send_replace(true);
                None
            }
            Source::Registry(url) => {
                // A lease lasts three heartbeats.
                Some(tokio::spawn(watch_registry(
                    url.clone(),
                    tx,
                    loaded_tx,
                    settings.heartbeat_interval * 3,
                )))
            }
            Source::Static(peers) => Some(tokio::spawn(refresh_peers(
                peers.clone(),
                false,
                tx,
                loaded_tx,
            ))),
            Source::Dns(peers) => Some(tokio::spawn(refresh_peers(
                peers.clone(),
                true,
                tx,
                loaded_tx,
            ))),
        };
        Self {
            catalog,
            loaded,
            _fixed: None,
            _source: source.map(|task| Arc::new(AbortOnDrop(task))),
        }
    }

    /// A directory with a fixed catalog (tests, in-process wiring).
    pub fn fixed(catalog: Catalog) -> Self {
        let (tx, catalog_rx) = watch::channel(Arc::new(catalog));
        Self {
            catalog: catalog_rx,
            loaded: watch::channel(true).1,
            _fixed: Some(Arc::new(tx)),
            _source: None,
        }
    }

    /// A `/readyz` check: ready once the first catalog has arrived, so that
    /// nothing is routed against an empty one at start.
    pub fn readiness(&self) -> Readiness {
        let loaded = self.loaded.clone();
        Arc::new(move || {
            let ready = *loaded.borrow();
            Box::pin(async move {
                if ready {
                    Ok(())
                } else {
                    Err("no catalog of instances yet".to_owned())
                }
            })
        })
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Whether a first catalog has arrived.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    pub fn instances(&self, service: &str) -> Vec<Instance> {
        self.catalog.borrow().instances(service).to_vec()
    }

    /// Resolves when the catalog changes.
    pub async fn changed(&mut self) -> bool {
        // The first load counts as a change even when the catalog it brought
        // equals the empty one before it.
        if !*self.loaded.borrow() {
            tokio::select! {
                changed = self.catalog.changed() => return changed.is_ok(),
                loaded = self.loaded.changed() => if loaded.is_ok() { return true; },
            }
        }
        self.catalog.changed().await.is_ok()
    }
}

/// Long-polls the registry's catalog; on failure keeps the last one.
///
/// After an outage, or when the registry's index went backwards (it
/// restarted and lost its memory), the registry may not know every live
/// instance yet: they register again on their next heartbeat. For one lease
/// period the directory then adds what the registry reports to what it knew,
/// instead of dropping instances the registry has merely not heard from yet.
async fn watch_registry(
    registry: String,
    catalog: watch::Sender<Arc<Catalog>>,
    loaded: watch::Sender<bool>,
    warm_up: Duration,
) {
    let client = http_client(Duration::from_secs(40));
    let mut index: Option<u64> = None;
    let mut retry = Duration::from_millis(100);
    let mut outage_reported = false;
    let mut warming_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let warming = warming_until.filter(|until| *until > now);
        let url = match (index, warming) {
            (Some(index), Some(until)) => {
                let wait = (until - now).as_millis().max(1);
                format!("{registry}/v1/services?index={index}&wait={wait}ms")
            }
            (Some(index), None) => format!("{registry}/v1/services?index={index}&wait=30s"),
            (None, _) => format!("{registry}/v1/services"),
        };
        match fetch_catalog(&client, &url).await {
            Ok((fresh, fresh_index)) => {
                if outage_reported {
                    tracing::info!("registry reachable again");
                    outage_reported = false;
                    warming_until = Some(tokio::time::Instant::now() + warm_up);
                }
                if index.is_some_and(|seen| fresh_index < seen) {
                    tracing::info!(
                        "the registry restarted; keeping known instances while they register again"
                    );
                    warming_until = Some(tokio::time::Instant::now() + warm_up);
                }
                retry = Duration::from_millis(100);
                index = Some(fresh_index);
                let still_warming =
                    warming_until.is_some_and(|until| until > tokio::time::Instant::now());
                let published = if still_warming {
                    union(&catalog.borrow(), fresh)
                } else {
                    fresh
                };
                if **catalog.borrow() != published {
                    catalog.send_replace(Arc::new(published));
                }
                loaded.send_if_modified(|loaded| !std::mem::replace(loaded, true));
            }
            Err(err) => {
                if !outage_reported {
                    tracing::warn!(error = %err, "registry unreachable; using the last known instances");
                    outage_reported = true;
                }
                tokio::time::sleep(retry).await;
                retry = backoff(retry, Duration::from_secs(5));
            }
        }
    }
}

/// `fresh` plus every instance of `known` it lacks.
fn union(known: &Catalog, mut fresh: Catalog) -> Catalog {
    for service in &known.services {
        let target = match fresh
            .services
            .iter_mut()
            .position(|s| s.name == service.name)
        {
            Some(position) => &mut fresh.services[position],
            None => {
                fresh.services.push(ServiceInstances {
                    name: service.name.clone(),
                    instances: Vec::new(),
                });
                fresh.services.last_mut().expect("just pushed")
            }
        };
        for instance in &service.instances {
            if !target
                .instances
                .iter()
                .any(|i| i.instance_id == instance.instance_id)
            {
                target.instances.push(instance.clone());
            }
        }
    }
    fresh.services.sort_by(|a, b| a.name.cmp(&b.name));
    fresh
}

async fn fetch_catalog(client: &Client, url: &str) -> anyhow::Result<(Catalog, u64)> {
    let response = client.get(url).send().await?.error_for_status()?;
    let index = response
        .headers()
        .get(INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((response.json()?, index))
}

/// Builds the catalog from static or DNS peers, asking each instance for its
/// routes; refreshes every few seconds (DNS answers and routes change).
async fn refresh_peers(
    peers: Vec<(String, String)>,
    resolve: bool,
    catalog: watch::Sender<Arc<Catalog>>,
    loaded: watch::Sender<bool>,
) {
    let client = http_client(Duration::from_secs(2));
    let mut routes_known: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut services: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for (service, url) in &peers {
            let addresses = if resolve {
                resolve_all(url).await
            } else {
                vec![url.clone()]
            };
            for address in addresses {
                if let Some(descriptor) = describe(&client, &address).await {
                    routes_known.insert(service.clone(), descriptor.routes.join(","));
                }
                let metadata = routes_known
                    .get(service)
                    .map(|routes| BTreeMap::from([(ROUTES_KEY.to_owned(), routes.clone())]))
                    .unwrap_or_default();
                services.entry(service.clone()).or_default().push(Instance {
                    service: service.clone(),
                    instance_id: format!("{service}@{address}"),
                    address,
                    version: String::new(),
                    metadata,
                    registered_at: String::new(),
                    last_heartbeat_at: String::new(),
                });
            }
        }
        let fresh = Catalog {
            services: services
                .into_iter()
                .map(|(name, instances)| ServiceInstances { name, instances })
                .collect(),
        };
        if **catalog.borrow() != fresh {
            catalog.send_replace(Arc::new(fresh));
        }
        loaded.send_if_modified(|loaded| !std::mem::replace(loaded, true));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn describe(client: &Client, address: &str) -> Option<Descriptor> {
    client
        .get(format!("{address}/internal/descriptor"))
        .send()
        .await
        .ok()?
        .json()
        .ok()
}

/// `http://name:port` → one URL per address the name resolves to.
async fn resolve_all(url: &str) -> Vec<String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    match tokio::net::lookup_host(with_port).await {
        Ok(addresses) => {
            let mut urls: Vec<String> = addresses.map(|a| format!("{scheme}://{a}")).collect();
            urls.sort();
            urls.dedup();
            urls
        }
        Err(err) => {
            tracing::debug!(%url, error = %err, "cannot resolve peer");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_garbage() {
        let peers = parse_peers(
            "identity=http://127.0.0.1:7001/, identity=http://127.0.0.1:7002,posting=http://p:1",
        )
        .unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(
            peers[0],
            ("identity".into(), "http://127.0.0.1:7001".into())
        );
        assert!(parse_peers("identity").is_err());
        assert!(parse_peers("identity=ftp://x").is_err());
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut delay = Duration::from_millis(100);
        for _ in 0..20 {
            delay = backoff(delay, Duration::from_secs(5));
        }
        assert!(
            delay <= Duration::from_millis(6250) && delay >= Duration::from_millis(3750),
            "{delay:?}"
        );
    }
}
