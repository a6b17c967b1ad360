//! The registry's state: one lease per instance, renewed by heartbeats.
//!
//! Every change (register, deregister, expiry, or a re-registration that
//! changes what clients see) bumps a global index; each service remembers the
//! index of its last change, so a watcher can wait for "anything newer than
//! what I have". Heartbeats alone change nothing a client sees and do not
//! bump the index. Time is `tokio::time::Instant`, so tests can pause it.

use dure_contracts::registry::{Catalog, Instance, Registration, ServiceInstances};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Lease {
    registration: Registration,
    registered_at: String,
    renewed: Instant,
    renewed_wall: String,
}

#[derive(Debug, Default)]
struct ServiceEntry {
    instances: BTreeMap<String, Lease>,
    /// The global index of this service's last change.
    modified: u64,
}

/// Every lease, by service and instance id.
#[derive(Debug)]
pub struct Leases {
    ttl: Duration,
    index: u64,
    services: BTreeMap<String, ServiceEntry>,
}

/// What a heartbeat found.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// No such lease (expired or never registered): register again.
    Unknown,
}

impl Leases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            index: 0,
            services: BTreeMap::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    fn bump(&mut self, service: &str) {
        self.index += 1;
        let index = self.index;
        self.services
            .entry(service.to_owned())
            .or_default()
            .modified = index;
    }

    /// Adds or replaces an instance's lease. An instance id is unique across
    /// services: registering it under another service moves it.
    pub fn register(&mut self, registration: Registration, now: Instant) {
        let previous = self.remove_instance(&registration.instance_id);
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.registration == registration);
        let registered_at = match previous {
            Some(p) if unchanged => p.registered_at,
            _ => dure_chassis::clock::now(),
        };
        let service = registration.service.clone();
        let lease = Lease {
            registered_at,
            renewed: now,
            renewed_wall: dure_chassis::clock::now(),
            registration,
        };
        let id = lease.registration.instance_id.clone();
        self.services
            .entry(service.clone())
            .or_default()
            .instances
            .insert(id, lease);
        if !unchanged {
            self.bump(&service);
        }
    }

    fn remove_instance(&mut self, instance_id: &str) -> Option<Lease> {
        let service = self
            .services
            .iter()
            .find(|(_, entry)| entry.instances.contains_key(instance_id))
            .map(|(name, _)| name.clone())?;
        self.services
            .get_mut(&service)?
            .instances
            .remove(instance_id)
    }

    pub fn heartbeat(&mut self, instance_id: &str, now: Instant) -> Renewal {
        for entry in self.services.values_mut() {
            if let Some(lease) = entry.instances.get_mut(instance_id) {
                lease.renewed = now;
                lease.renewed_wall = dure_chassis::clock::now();
                return Renewal::Renewed;
            }
        }
        Renewal::Unknown
    }

    /// Removes an instance; true if it was there.
    pub fn deregister(&mut self, instance_id: &str) -> bool {
        match self.remove_instance(instance_id) {
            Some(lease) => {
                self.bump(&lease.registration.service);
                true
            }
            None => false,
        }
    }

    /// Drops every lease not renewed within the TTL; returns the ids dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let ttl = self.ttl;
        let mut expired = Vec::new();
        for (service, entry) in &mut self.services {
            entry.instances.retain(|id, lease| {
                let alive = now.duration_since(lease.renewed) <= ttl;
                if !alive {
                    expired.push((service.clone(), id.clone()));
                }
                alive
            });
        }
        for (service, _) in &expired {
            self.bump(service);
        }
        expired.into_iter().map(|(_, id)| id).collect()
    }

    fn instances_of(entry: &ServiceEntry, service: &str) -> Vec<Instance> {
        entry
            .instances
            .values()
            .map(|lease| Instance {
                service: service.to_owned(),
                instance_id: lease.registration.instance_id.clone(),
                address: lease.registration.address.clone(),
                version: lease.registration.version.clone(),
                metadata: lease.registration.metadata.clone(),
                registered_at: lease.registered_at.clone(),
                last_heartbeat_at: lease.renewed_wall.clone(),
            })
            .collect()
    }

    /// One service's instances and the index of its last change.
    pub fn service(&self, name: &str) -> (ServiceInstances, u64) {
        let (instances, modified) = self.services.get(name).map_or((Vec::new(), 0), |entry| {
            (Self::instances_of(entry, name), entry.modified)
        });
        (
            ServiceInstances {
                name: name.to_owned(),
                instances,
            },
            modified,
        )
    }

    /// Every service that has instances.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            services: self
                .services
                .iter()
                .filter(|(_, entry)| !entry.instances.is_empty())
                .map(|(name, entry)| ServiceInstances {
                    name: name.clone(),
                    instances: Self::instances_of(entry, name),
                })
                .collect(),
        }
    }

    /// How long ago each instance of each service last heartbeat (dashboard).
    pub fn ages(&self, now: Instant) -> BTreeMap<String, Duration> {
        self.services
            .values()
            .flat_map(|entry| entry.instances.iter())
            .map(|(id, lease)| (id.clone(), now.duration_since(lease.renewed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(service: &str, id: &str) -> Registration {
        Registration {
            service: service.into(),
            instance_id: id.into(),
            address: format!("http://127.0.0.1:1/{id}"),
            version: "0.1.0".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_after_the_ttl_without_heartbeats() {
        let mut leases = Leases::new(Duration::from_secs(15));
        leases.register(registration("identity", "a"), Instant::now());
        leases.register(registration("identity", "b"), Instant::now());

        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(5)).await;
            assert_eq!(leases.heartbeat("a", Instant::now()), Renewal::Renewed);
            leases.expire(Instant::now());
        }
        // b missed three heartbeats (15 s) and then some: gone; a is alive.
        let (identity, _) = leases.service("identity");
        let ids: Vec<&str> = identity
            .instances
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(leases.heartbeat("b", Instant::now()), Renewal::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_survives_exactly_the_ttl() {
        let mut leases = Leases::new(Duration::from_secs(15));
        leases.register(registration("identity", "a"), Instant::now());
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(leases.expire(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(leases.expire(Instant::now()), ["a"]);
    }

    #[test]
    fn changes_bump_the_index_heartbeats_do_not() {
        let mut leases = Leases::new(Duration::from_secs(15));
        let now = Instant::now();
        leases.register(registration("identity", "a"), now);
        let (_, first) = leases.service("identity");
        leases.heartbeat("a", now);
        leases.register(registration("identity", "a"), now);
        assert_eq!(
            leases.service("identity").1,
            first,
            "same registration again is no change"
        );
        leases.register(registration("posting", "p"), now);
        assert_eq!(
            leases.service("identity").1,
            first,
            "another service's change"
        );
        assert!(leases.deregister("a"));
        assert!(leases.service("identity").1 > first);
        assert!(!leases.deregister("a"));
        assert_eq!(leases.catalog().services.len(), 1);
    }
}
