//! Memory and CPU of every process of the `dure up` under load: the console
//! names the children and their pids, `/proc` gives their figures, and the
//! children's parent is `dure up` itself (which also runs the console).

use crate::proc_stats;
use reqwest::Client;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Where to ask which processes make up the system.
#[derive(Debug)]
pub struct Console {
    url: Option<String>,
}

/// Figures of the processes at one moment.
#[derive(Debug)]
pub struct Snapshot {
    at: Instant,
    processes: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    pid: u32,
    rss_bytes: Option<u64>,
    pss_bytes: Option<u64>,
    ticks: Option<u64>,
}

/// One process across a run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub name: String,
    pub pid: u32,
    /// Before the measured load (after the run's seeding).
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    /// Proportional set size, the process's share of the system's memory
    /// ([`proc_stats::pss_bytes`]).
    pub pss_before: Option<u64>,
    pub pss_after: Option<u64>,
    /// Percent of one core between the two samples.
    pub cpu_percent: Option<f64>,
}

#[derive(Deserialize)]
struct Resources {
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Resource {
    instance_id: String,
    pid: Option<u32>,
}

impl Console {
    /// The console at `url`, unless it is `none` or the system is not on
    /// this machine (its pids would mean nothing here).
    pub fn at(url: &str, gateway: &str) -> Self {
        let local = ["://127.", "://localhost", "://[::1]"]
            .iter()
            .any(|host| gateway.contains(host));
        let url = (url != "none" && local).then(|| url.trim_end_matches('/').to_owned());
        Self { url }
    }

    /// The system's processes now, with `dure load` itself; `None` when
    /// the console does not answer.
    pub async fn sample(&self, client: &Client) -> Option<Snapshot> {
        let url = self.url.as_ref()?;
        let resources: Resources = client
            .get(format!("{url}/api/resources"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        let mut named: Vec<(String, u32)> = resources
            .resources
            .into_iter()
            .filter_map(|r| Some((r.instance_id, r.pid?)))
            .collect();
        if let Some(supervisor) = named.first().and_then(|(_, pid)| proc_stats::parent(*pid)) {
            named.insert(0, ("dure up".to_owned(), supervisor));
        }
        named.push(("dure load".to_owned(), std::process::id()));
        let processes = named
            .into_iter()
            .map(|(name, pid)| Sample {
                name,
                pid,
                rss_bytes: proc_stats::rss_bytes(pid),
                pss_bytes: proc_stats::pss_bytes(pid),
                ticks: proc_stats::cpu_ticks(pid),
            })
            .collect();
        Some(Snapshot {
            at: Instant::now(),
            processes,
        })
    }
}

/// Each process's figures across the run; a process that restarted in
/// between (another pid) has no CPU figure.
pub fn compare(before: Option<Snapshot>, after: Option<Snapshot>) -> Option<Vec<Figures>> {
    let after = after?;
    let seconds = before
        .as_ref()
        .map(|b| after.at.duration_since(b.at).as_secs_f64())
        .unwrap_or(0.0);
    Some(
        after
            .processes
            .iter()
            .map(|now| {
                let earlier = before
                    .as_ref()
                    .and_then(|b| b.processes.iter().find(|p| p.pid == now.pid));
                let cpu_percent = match (earlier.and_then(|e| e.ticks), now.ticks) {
                    (Some(t0), Some(t1)) if seconds > 0.0 => Some(
                        t1.saturating_sub(t0) as f64 / proc_stats::TICKS_PER_SECOND / seconds
                            * 100.0,
                    ),
                    _ => None,
                };
                Figures {
                    name: now.name.clone(),
                    pid: now.pid,
                    rss_before: earlier.and_then(|e| e.rss_bytes),
                    rss_after: now.rss_bytes,
                    pss_before: earlier.and_then(|e| e.pss_bytes),
                    pss_after: now.pss_bytes,
                    cpu_percent,
                }
            })
            .collect(),
    )
}
