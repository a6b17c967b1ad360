//! What the gateway routes to: a route table and the instances behind each
//! route, rebuilt from the discovery catalog whenever it changes.
//!
//! Routes are path prefixes that services announce. A prefix matches the path
//! itself and anything below it at a segment boundary (`/api/user` matches
//! `/api/user` and `/api/user/x`, not `/api/users`); the longest match wins.
//! Only prefixes under `/api/` are routable, and `/` (the web app), which
//! takes every path outside `/api/` and `/internal/` with the lowest
//! precedence; so `/internal/*` and the registry's API can never be reached
//! through the gateway, whatever a registration claims.

/// The prefix of the web app: everything outside the reserved trees.
const ROOT: &str = "/";

/// Paths `/` never takes: the API (only its own prefixes route there) and
/// internal routes.
fn is_reserved(path: &str) -> bool {
    ["/api", "/internal"].iter().any(|tree| {
        path.strip_prefix(tree)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderValue, Uri};
use dure_chassis::resilience::Ejection;
use dure_chassis::telemetry::trace::SharedAttributes;
use dure_contracts::registry::Catalog;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One instance the gateway can send requests to.
#[derive(Debug)]
pub struct Endpoint {
    pub service: String,
    pub instance_id: String,
    /// Base URL, e.g. `http://127.0.0.1:7001`.
    pub address: String,
    in_flight: AtomicUsize,
    /// Taken out of rotation after consecutive failures.
    pub ejection: Ejection,
    /// Where requests go; `None` when `address` is not a plain `http://`
    /// URL, the only kind the gateway speaks to instances over TCP.
    target: Option<Target>,
    /// The instance's name when it runs in this process (`local://name`).
    pub in_process: Option<String>,
    /// `gateway_upstream_duration_seconds` of the service, looked up once.
    pub duration: metrics::Histogram,
    /// What the span of a call to it says about it, made once.
    pub span_attributes: SharedAttributes,
}

impl Endpoint {
    pub fn new(service: &str, instance_id: &str, address: &str) -> Self {
        let address = address.trim_end_matches('/').to_owned();
        let target = address.parse::<Uri>().ok().and_then(|uri| {
            let parts = uri.into_parts();
            let authority = parts.authority?;
            let host = HeaderValue::from_str(authority.as_str()).ok()?;
            (parts.scheme? == Scheme::HTTP).then(|| Target {
                host,
                authority,
                base: parts
                    .path_and_query
                    .map(|pq| pq.path().trim_end_matches('/').to_owned())
                    .unwrap_or_default(),
            })
        });
        let span_attributes = SharedAttributes::new(&[
            ("peer.service", service),
            ("server.address", &address),
            ("service.instance.id", instance_id),
        ]);
        Self {
            service: service.to_owned(),
            instance_id: instance_id.to_owned(),
            span_attributes,
            duration: metrics::histogram!("gateway_upstream_duration_seconds", "service" => service.to_owned()),
            in_process: dure_chassis::local::name_of(&address).map(str::to_owned),
            address,
            in_flight: AtomicUsize::new(0),
            ejection: Ejection::default(),
            target,
        }
    }

    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// An instance's `host:port`, and the path its address starts with, if any.
#[derive(Debug)]
pub struct Target {
    pub authority: Authority,
    /// `Host` of the requests sent to it.
    pub host: HeaderValue,
    base: String,
}

impl Target {
    /// The request target (origin form) of `path_and_query` on the instance.
    pub fn uri(&self, path_and_query: &PathAndQuery) -> Option<Uri> {
        if self.base.is_empty() {
            Some(Uri::from(path_and_query.clone()))
        } else {
            format!("{}{path_and_query}", self.base).parse().ok()
        }
    }
}

pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of routes and endpoints.
#[derive(Debug, Default)]
pub struct Upstreams {
    /// `(prefix, service)`, longest prefix first.
    routes: Vec<(String, String)>,
    endpoints: HashMap<String, Vec<Arc<Endpoint>>>,
}

impl Upstreams {
    /// Builds a snapshot, keeping the in-flight counters of endpoints that
    /// were already known.
    pub fn build(catalog: &Catalog, previous: &Upstreams) -> Self {
        let known: HashMap<&str, &Arc<Endpoint>> = previous
            .endpoints
            .values()
            .flatten()
            .map(|endpoint| (endpoint.instance_id.as_str(), endpoint))
            .collect();
        let mut routes = Vec::new();
        let mut endpoints = HashMap::new();
        for service in &catalog.services {
            let mut list = Vec::new();
            for instance in &service.instances {
                for prefix in instance.routes() {
                    let routable =
                        (prefix.starts_with("/api/") || prefix == ROOT) && !prefix.contains("..");
                    if routable && !routes.iter().any(|(p, _)| *p == prefix) {
                        routes.push((
                            prefix.trim_end_matches('/').to_owned(),
                            service.name.clone(),
                        ));
                    }
                }
                let endpoint = match known.get(instance.instance_id.as_str()) {
                    // Kept, with its counters, while the address stays.
                    Some(endpoint)
                        if endpoint.address == instance.address.trim_end_matches('/') =>
                    {
                        Arc::clone(endpoint)
                    }
                    _ => Arc::new(Endpoint::new(
                        &service.name,
                        &instance.instance_id,
                        &instance.address,
                    )),
                };
                list.push(endpoint);
            }
            endpoints.insert(service.name.clone(), list);
        }
        // A service whose instances are all gone keeps its routes, so that
        // its requests get 503 (unavailable) rather than 404 (no such thing).
        for (prefix, service) in &previous.routes {
            if !routes.iter().any(|(p, _)| p == prefix) {
                routes.push((prefix.clone(), service.clone()));
                endpoints.entry(service.clone()).or_default();
            }
        }
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { routes, endpoints }
    }

    /// The service owning `path`, if any.
    pub fn route(&self, path: &str) -> Option<&str> {
        self.matching(path).map(|(_, service)| service)
    }

    /// The prefix matching `path` and the service owning it.
    pub fn matching(&self, path: &str) -> Option<(&str, &str)> {
        self.routes
            .iter()
            .find(|(prefix, _)| {
                if prefix.is_empty() {
                    return path.starts_with('/') && !is_reserved(path);
                }
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(prefix, service)| (prefix.as_str(), service.as_str()))
    }

    pub fn endpoints(&self, service: &str) -> &[Arc<Endpoint>] {
        self.endpoints.get(service).map_or(&[], Vec::as_slice)
    }

    pub fn services(&self) -> impl Iterator<Item = (&str, &[Arc<Endpoint>])> {
        self.endpoints
            .iter()
            .map(|(name, list)| (name.as_str(), list.as_slice()))
    }
}

/// Power of two choices: of two random endpoints (not in `exclude`, not
/// ejected unless every one is), the one with fewer requests in flight.
pub fn pick(endpoints: &[Arc<Endpoint>], exclude: Option<&Arc<Endpoint>>) -> Option<Arc<Endpoint>> {
    let eligible: Vec<&Arc<Endpoint>> = endpoints
        .iter()
        .filter(|e| exclude.is_none_or(|x| !Arc::ptr_eq(e, x)))
        .collect();
    let healthy: Vec<&Arc<Endpoint>> = eligible
        .iter()
        .copied()
        .filter(|e| !e.ejection.is_ejected())
        .collect();
    // Never eject every instance: with all of them out, all are candidates.
    let candidates = if healthy.is_empty() {
        eligible
    } else {
        healthy
    };
    match candidates.len() {
        0 => None,
        1 => Some(Arc::clone(candidates[0])),
        n => {
            let first = rand::random::<usize>() % n;
            let mut second = rand::random::<usize>() % (n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (candidates[first], candidates[second]);
            Some(Arc::clone(if b.in_flight() < a.in_flight() {
                b
            } else {
                a
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_contracts::registry::{Instance, ROUTES_KEY, ServiceInstances};
    use std::collections::BTreeMap;

    fn instance(service: &str, id: &str, routes: &str) -> Instance {
        Instance {
            service: service.into(),
            instance_id: id.into(),
            address: format!("http://{id}"),
            version: String::new(),
            metadata: BTreeMap::from([(ROUTES_KEY.to_owned(), routes.to_owned())]),
            registered_at: String::new(),
            last_heartbeat_at: String::new(),
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            services: vec![
                ServiceInstances {
                    name: "identity".into(),
                    instances: vec![instance(
                        "identity",
                        "i1",
                        "/api/users,/api/user,/internal,/v1/instances",
                    )],
                },
                ServiceInstances {
                    name: "posting".into(),
                    instances: vec![
                        instance("posting", "p1", "/api/postings"),
                        instance("posting", "p2", "/api/postings"),
                    ],
                },
            ],
        }
    }

    #[test]
    fn the_root_takes_every_path_outside_api_and_internal_and_nothing_else() {
        let mut with_web = catalog();
        with_web.services.push(ServiceInstances {
            name: "web".into(),
            instances: vec![instance("web", "w1", "/")],
        });
        let upstreams = Upstreams::build(&with_web, &Upstreams::default());
        assert_eq!(upstreams.route("/"), Some("web"));
        assert_eq!(upstreams.route("/postings/1"), Some("web"));
        assert_eq!(upstreams.route("/apiary"), Some("web"));
        assert_eq!(upstreams.route("/api/postings"), Some("posting"));
        assert_eq!(upstreams.route("/api/nothing"), None);
        assert_eq!(upstreams.route("/api"), None);
        assert_eq!(upstreams.route("/internal/events"), None);
        assert_eq!(upstreams.route("/internal"), None);
        assert_eq!(upstreams.route("/v1/instances"), Some("web"));
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let upstreams = Upstreams::build(&catalog(), &Upstreams::default());
        assert_eq!(upstreams.route("/api/user"), Some("identity"));
        assert_eq!(upstreams.route("/api/users/42"), Some("identity"));
        assert_eq!(upstreams.route("/api/usersx"), None);
        assert_eq!(upstreams.route("/api/postings/1/comments"), Some("posting"));
        assert_eq!(upstreams.route("/internal/events"), None);
        assert_eq!(upstreams.route("/v1/instances"), None);
        assert_eq!(upstreams.route("/"), None);
    }

    #[test]
    fn two_choices_prefer_the_less_busy_and_respect_exclusion() {
        let upstreams = Upstreams::build(&catalog(), &Upstreams::default());
        let endpoints = upstreams.endpoints("posting");
        let _busy = (0..5).map(|_| endpoints[0].start()).collect::<Vec<_>>();
        for _ in 0..20 {
            assert_eq!(pick(endpoints, None).unwrap().instance_id, "p2");
        }
        assert_eq!(
            pick(endpoints, Some(&endpoints[1])).unwrap().instance_id,
            "p1"
        );
        assert!(pick(&endpoints[..1], Some(&endpoints[0])).is_none());
        // Rebuilding keeps the counters.
        let rebuilt = Upstreams::build(&catalog(), &upstreams);
        assert_eq!(rebuilt.endpoints("posting")[0].in_flight(), 5);
        // With every instance gone, the routes stay and lead nowhere.
        let empty = Upstreams::build(&Catalog::default(), &rebuilt);
        assert_eq!(empty.route("/api/postings"), Some("posting"));
        assert!(empty.endpoints("posting").is_empty());
    }
}
