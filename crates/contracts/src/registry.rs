//! The registry's internal API: what instances send and what clients read.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /v1/instances`: an instance announcing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub service: String,
    pub instance_id: String,
    /// Base URL the instance serves on, e.g. `http://127.0.0.1:7001`.
    pub address: String,
    pub version: String,
    /// Free-form strings; `routes` holds the public path prefixes the
    /// instance serves, comma-separated (see [`ROUTES_KEY`]).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The metadata key that carries an instance's public path prefixes.
pub const ROUTES_KEY: &str = "routes";

/// The answer to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseGranted {
    /// Seconds without a heartbeat after which the instance is dropped.
    pub lease_ttl_secs: u64,
}

/// One registered instance as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub service: String,
    pub instance_id: String,
    pub address: String,
    pub version: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub registered_at: String,
    pub last_heartbeat_at: String,
}

impl Instance {
    /// The public path prefixes this instance serves.
    pub fn routes(&self) -> Vec<String> {
        self.metadata
            .get(ROUTES_KEY)
            .map(|routes| {
                routes
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The instances of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceInstances {
    pub name: String,
    pub instances: Vec<Instance>,
}

/// `GET /v1/services`: every service with its instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    pub services: Vec<ServiceInstances>,
}

impl Catalog {
    pub fn instances(&self, service: &str) -> &[Instance] {
        self.services
            .iter()
            .find(|s| s.name == service)
            .map_or(&[], |s| s.instances.as_slice())
    }
}

/// The response header carrying the registry's change index, for long polls.
pub const INDEX_HEADER: &str = "x-dure-index";

/// What a service says about itself: served at `/internal/descriptor` and
/// copied into its registration's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    /// Public path prefixes the service owns, e.g. `/api/users`.
    pub routes: Vec<String>,
}
