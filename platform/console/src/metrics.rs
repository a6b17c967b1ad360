//! Metrics and event positions, scraped from every process: its
//! Prometheus `/metrics` and, for producers, the feed's last position.
//! Each scrape is boiled down at once to what the console shows (request
//! counts and latency buckets per route, breaker states, consumer lag and
//! dead letters). Per process the console keeps the scrapes of the last
//! window, whose differences give rates and percentiles, and for the charts
//! [`KEPT`] totals (ten minutes) of one number each.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often every process is scraped.
pub const EVERY: Duration = Duration::from_secs(2);
/// Request totals kept per process, for the charts: ten minutes.
pub const KEPT: usize = 300;
/// Whole scrapes kept per process: the window's, and one before it.
const RECENT: usize = (WINDOW as usize) / 2 + 2;
/// Rates and percentiles are over this window.
pub const WINDOW: f64 = 60.0;

/// One process's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    pub routes: BTreeMap<String, RouteCounts>,
    /// Breaker name → 0 closed, 1 open, 2 half-open.
    pub breakers: BTreeMap<String, f64>,
    /// (consumer, producer) → events behind.
    pub lags: BTreeMap<(String, String), f64>,
    /// consumer → events handled, all types.
    pub handled: BTreeMap<String, f64>,
    /// consumer → events given up on.
    pub dead_letters: BTreeMap<String, f64>,
    /// The feed's last position, for a producer.
    pub last_position: Option<u64>,
    /// Erasure sagas by state (`in_progress`, `completed`, `failed`), for
    /// the process orchestrating them.
    pub sagas: BTreeMap<String, f64>,
}

/// Cumulative counts of one route (every method and status together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCounts {
    pub requests: f64,
    pub errors: f64,
    /// `le` (seconds) → cumulative count, ascending.
    pub buckets: Vec<(f64, f64)>,
}

/// One route's traffic over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteStats {
    pub service: String,
    pub instance_id: String,
    pub route: String,
    /// Requests per second.
    pub rate: f64,
    /// 5xx answers per second.
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerState {
    pub instance_id: String,
    pub name: String,
    pub state: &'static str,
}

/// The erasure sagas an orchestrating process reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sagas {
    pub instance_id: String,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Producer {
    pub service: String,
    pub instance_id: String,
    pub last_position: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Consumer {
    /// The consuming service's process.
    pub service: String,
    pub instance_id: String,
    /// The producer it reads.
    pub source: String,
    /// The position it applied up to, when the producer's is known.
    pub position: Option<u64>,
    pub lag: f64,
    pub handled: f64,
    /// Events it gave up on (dead letters).
    pub failures: f64,
}

/// A process to scrape: its instance, service and address.
#[derive(Debug, Clone)]
pub struct Target {
    pub instance_id: String,
    pub service: String,
    pub address: String,
}

/// Every process's recent samples.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<HashMap<String, Kept>>,
}

/// What is kept of one process.
#[derive(Debug, Default)]
struct Kept {
    service: String,
    /// The last [`RECENT`] scrapes.
    samples: VecDeque<Sample>,
    /// (unix seconds, requests so far), the last [`KEPT`].
    totals: VecDeque<(f64, f64)>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, target: &Target, sample: Sample) {
        let mut inner = self.lock();
        let kept = inner.entry(target.instance_id.clone()).or_default();
        kept.service = target.service.clone();
        // A restarted process counts from zero: its old samples mean nothing.
        if kept
            .samples
            .back()
            .is_some_and(|last| restarted(last, &sample))
        {
            kept.samples.clear();
            kept.totals.clear();
        }
        if kept.samples.len() == RECENT {
            kept.samples.pop_front();
        }
        if kept.totals.len() == KEPT {
            kept.totals.pop_front();
        }
        kept.totals.push_back((sample.at, total(&sample)));
        kept.samples.push_back(sample);
    }

    /// Traffic per route over the window: the API and pages first, then the
    /// plumbing (probes, scrapes, heartbeats, feeds); busiest first in each.
    pub fn routes(&self) -> Vec<RouteStats> {
        let inner = self.lock();
        let mut stats = Vec::new();
        for (
            instance,
            Kept {
                service, samples, ..
            },
        ) in inner.iter()
        {
            let (Some(first), Some(last)) = (window_start(samples), samples.back()) else {
                continue;
            };
            let seconds = (last.at - first.at).max(1e-9);
            for (route, now) in &last.routes {
                let before = first.routes.get(route).cloned().unwrap_or_default();
                let requests = (now.requests - before.requests).max(0.0);
                let buckets: Vec<(f64, f64)> = now
                    .buckets
                    .iter()
                    .map(|(le, count)| {
                        let earlier = before
                            .buckets
                            .iter()
                            .find(|(l, _)| l == le)
                            .map_or(0.0, |(_, c)| *c);
                        (*le, (count - earlier).max(0.0))
                    })
                    .collect();
                stats.push(RouteStats {
                    service: service.clone(),
                    instance_id: instance.clone(),
                    route: route.clone(),
                    rate: requests / seconds,
                    error_rate: (now.errors - before.errors).max(0.0) / seconds,
                    p50_ms: quantile(&buckets, 0.5).map(|s| s * 1e3),
                    p99_ms: quantile(&buckets, 0.99).map(|s| s * 1e3),
                });
            }
        }
        stats.sort_by(|a, b| {
            plumbing(&a.route)
                .cmp(&plumbing(&b.route))
                .then(b.rate.total_cmp(&a.rate))
                .then_with(|| (&a.instance_id, &a.route).cmp(&(&b.instance_id, &b.route)))
        });
        stats
    }

    /// Requests per second of each process, between consecutive samples,
    /// oldest first: (instance, [(unix seconds, rate)]).
    pub fn rates(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let inner = self.lock();
        let mut series: Vec<(String, Vec<(f64, f64)>)> = inner
            .iter()
            .map(|(instance, kept)| {
                let points = kept
                    .totals
                    .iter()
                    .zip(kept.totals.iter().skip(1))
                    .map(|((a_at, a), (b_at, b))| {
                        let seconds = (b_at - a_at).max(1e-9);
                        (*b_at, ((b - a) / seconds).max(0.0))
                    })
                    .collect();
                (instance.clone(), points)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }

    pub fn breakers(&self) -> Vec<BreakerState> {
        let inner = self.lock();
        let mut states: Vec<BreakerState> = inner
            .iter()
            .filter_map(|(instance, kept)| Some((instance, kept.samples.back()?)))
            .flat_map(|(instance, last)| {
                last.breakers.iter().map(move |(name, value)| BreakerState {
                    instance_id: instance.clone(),
                    name: name.clone(),
                    state: match *value as i64 {
                        1 => "open",
                        2 => "half-open",
                        _ => "closed",
                    },
                })
            })
            .collect();
        states.sort_by(|a, b| (&a.instance_id, &a.name).cmp(&(&b.instance_id, &b.name)));
        states
    }

    /// Erasure sagas by state, per orchestrating process (identity's).
    pub fn sagas(&self) -> Vec<Sagas> {
        let inner = self.lock();
        let mut sagas: Vec<Sagas> = inner
            .iter()
            .filter_map(|(instance, kept)| {
                let last = kept.samples.back()?;
                if last.sagas.is_empty() {
                    return None;
                }
                let count = |state: &str| last.sagas.get(state).copied().unwrap_or(0.0) as u64;
                Some(Sagas {
                    instance_id: instance.clone(),
                    in_progress: count("in_progress"),
                    completed: count("completed"),
                    failed: count("failed"),
                })
            })
            .collect();
        sagas.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        sagas
    }

    /// Producers' last positions and consumers' positions, lag and failures.
    pub fn events(&self) -> (Vec<Producer>, Vec<Consumer>) {
        let inner = self.lock();
        let mut producers: Vec<Producer> = inner
            .iter()
            .filter_map(|(instance, kept)| {
                Some(Producer {
                    service: kept.service.clone(),
                    instance_id: instance.clone(),
                    last_position: kept.samples.back()?.last_position?,
                })
            })
            .collect();
        producers.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let mut consumers = Vec::new();
        for (
            instance,
            Kept {
                service, samples, ..
            },
        ) in inner.iter()
        {
            let Some(last) = samples.back() else { continue };
            for ((consumer, producer), lag) in &last.lags {
                let position = producers
                    .iter()
                    .find(|p| &p.service == producer)
                    .map(|p| p.last_position.saturating_sub(*lag as u64));
                consumers.push(Consumer {
                    service: service.clone(),
                    instance_id: instance.clone(),
                    source: producer.clone(),
                    position,
                    lag: *lag,
                    handled: last.handled.get(consumer).copied().unwrap_or(0.0),
                    failures: last.dead_letters.get(consumer).copied().unwrap_or(0.0),
                });
            }
        }
        consumers.sort_by(|a, b| (&a.instance_id, &a.source).cmp(&(&b.instance_id, &b.source)));
        (producers, consumers)
    }
}

/// Routes that serve the platform rather than its users.
fn plumbing(route: &str) -> bool {
    [
        "/internal/",
        "/v1/",
        "/readyz",
        "/healthz",
        "/metrics",
        "unmatched",
    ]
    .iter()
    .any(|prefix| route.starts_with(prefix))
}

/// Every request a sample counts.
fn total(sample: &Sample) -> f64 {
    sample.routes.values().map(|r| r.requests).sum()
}

/// Whether `now` comes from a new process: a counter went down.
fn restarted(before: &Sample, now: &Sample) -> bool {
    total(now) < total(before)
}

/// The oldest sample inside the window (or the oldest there is).
fn window_start(samples: &VecDeque<Sample>) -> Option<&Sample> {
    let last = samples.back()?;
    samples
        .iter()
        .find(|s| last.at - s.at <= WINDOW)
        .filter(|s| s.at < last.at)
        .or_else(|| samples.front().filter(|s| s.at < last.at))
}

/// The `q` quantile of a cumulative histogram, interpolated linearly
/// inside its bucket as Prometheus's `histogram_quantile` does.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// A series' labels, in the order written.
type Labels = Vec<(String, String)>;

/// One line of the Prometheus text format: name, labels, value.
fn series(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some((
                name,
                Vec::new(),
                value.split_whitespace().next()?.parse().ok()?,
            ));
        }
    };
    let close = rest.rfind('}')?;
    let value: f64 = rest[close + 1..].split_whitespace().next()?.parse().ok()?;
    let mut labels = Vec::new();
    let mut body = &rest[1..close];
    while let Some(eq) = body.find('=') {
        let key = body[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = body[eq + 1..].strip_prefix('"')?;
        let mut value_text = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value_text.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value_text.push(c),
            }
        }
        labels.push((key, value_text));
        body = &after[end? + 1..];
    }
    Some((name, labels, value))
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A `/metrics` page boiled down to a [`Sample`].
pub fn parse(text: &str, at: f64) -> Sample {
    let mut sample = Sample {
        at,
        ..Sample::default()
    };
    let mut buckets: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(series) {
        match name {
            "http_server_requests_total" => {
                let Some(route) = label(&labels, "http_route") else {
                    continue;
                };
                let counts = sample.routes.entry(route.to_owned()).or_default();
                counts.requests += value;
                if label(&labels, "http_response_status_code")
                    .and_then(|s| s.parse::<u16>().ok())
                    .is_some_and(|status| status >= 500)
                {
                    counts.errors += value;
                }
            }
            "http_server_request_duration_seconds_bucket" => {
                let (Some(route), Some(le)) = (label(&labels, "http_route"), label(&labels, "le"))
                else {
                    continue;
                };
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    }
                };
                let slot = buckets
                    .entry(route.to_owned())
                    .or_default()
                    .entry(le.to_bits())
                    .or_insert((le, 0.0));
                slot.1 += value;
            }
            "circuit_breaker_state" => {
                if let Some(breaker) = label(&labels, "name") {
                    sample.breakers.insert(breaker.to_owned(), value);
                }
            }
            "events_consumer_lag" => {
                if let (Some(consumer), Some(producer)) =
                    (label(&labels, "consumer"), label(&labels, "producer"))
                {
                    sample
                        .lags
                        .insert((consumer.to_owned(), producer.to_owned()), value);
                }
            }
            "events_handled_total" => {
                if let Some(consumer) = label(&labels, "consumer") {
                    *sample.handled.entry(consumer.to_owned()).or_default() += value;
                }
            }
            "erasure_sagas" => {
                if let Some(state) = label(&labels, "state") {
                    sample.sagas.insert(state.to_owned(), value);
                }
            }
            "events_dead_lettered_total" => {
                if let Some(consumer) = label(&labels, "consumer") {
                    *sample.dead_letters.entry(consumer.to_owned()).or_default() += value;
                }
            }
            _ => {}
        }
    }
    for (route, by_le) in buckets {
        let mut sorted: Vec<(f64, f64)> = by_le.into_values().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sample.routes.entry(route).or_default().buckets = sorted;
    }
    sample
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Scrapes every target once: `/metrics`, and the feed's last position.
pub async fn scrape(client: &reqwest::Client, metrics: &Metrics, targets: &[Target]) {
    let scrapes = targets.iter().map(|target| async move {
        let page = client
            .get(format!("{}/metrics", target.address))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())?
            .text()
            .await
            .ok()?;
        let mut sample = parse(&page, unix_now());
        // Only a producer has an outbox (and a feed to ask).
        if page.contains("events_sequenced_total") || page.contains("events_outbox_backlog") {
            sample.last_position = last_position(client, &target.address).await;
        }
        Some((target, sample))
    });
    for (target, sample) in futures_util::future::join_all(scrapes)
        .await
        .into_iter()
        .flatten()
    {
        metrics.record(target, sample);
    }
}

/// A `traceparent` that asks not to be traced: the console's own questions
/// would otherwise fill its trace store with feed requests.
fn unsampled() -> String {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    format!("00-{trace:032x}-{span:016x}-00")
}

/// A producer's last position, from its feed (none for a process without).
async fn last_position(client: &reqwest::Client, address: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Page {
        last_position: u64,
    }
    let page: Page = client
        .get(format!(
            "{address}/internal/events?after={}&limit=1",
            i64::MAX
        ))
        .header("traceparent", unsampled())
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?
        .json()
        .await
        .ok()?;
    Some(page.last_position)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE http_server_requests_total counter
http_server_requests_total{http_request_method="GET",http_route="/api/postings",http_response_status_code="200"} 90
http_server_requests_total{http_request_method="POST",http_route="/api/postings",http_response_status_code="503"} 10
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/postings",http_response_status_code="200",le="0.001"} 40
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/postings",http_response_status_code="200",le="0.01"} 90
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/api/postings",http_response_status_code="200",le="+Inf"} 90
http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/postings",http_response_status_code="503",le="0.001"} 0
http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/postings",http_response_status_code="503",le="0.01"} 0
http_server_request_duration_seconds_bucket{http_request_method="POST",http_route="/api/postings",http_response_status_code="503",le="+Inf"} 10
circuit_breaker_state{name="peer:identity"} 1
events_consumer_lag{consumer="notification",producer="posting"} 3
events_handled_total{consumer="notification",type="comment.added"} 7
events_dead_lettered_total{consumer="notification",type="comment.added"} 1
process_resident_memory_bytes 1.5e7
"#;

    #[test]
    fn a_metrics_page_is_boiled_down() {
        let sample = parse(PAGE, 10.0);
        let route = &sample.routes["/api/postings"];
        assert_eq!((route.requests, route.errors), (100.0, 10.0));
        assert_eq!(
            route.buckets,
            [(0.001, 40.0), (0.01, 90.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(sample.breakers["peer:identity"], 1.0);
        assert_eq!(sample.lags[&("notification".into(), "posting".into())], 3.0);
        assert_eq!(sample.handled["notification"], 7.0);
        assert_eq!(sample.dead_letters["notification"], 1.0);
    }

    #[test]
    fn labels_with_escapes_are_read() {
        let (name, labels, value) = series(r#"m{a="x\"y",b="z"} 2"#).unwrap();
        assert_eq!(name, "m");
        assert_eq!(
            labels,
            [("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
        assert_eq!(value, 2.0);
        assert!(series("# HELP m").is_none());
        assert_eq!(series("plain 3").unwrap().2, 3.0);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let buckets = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(&buckets, 0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((quantile(&buckets, 0.75).unwrap() - 0.0055).abs() < 1e-12);
        assert_eq!(quantile(&[(0.1, 0.0)], 0.5), None);
    }

    #[test]
    fn sagas_come_from_the_orchestrators_gauges() {
        let metrics = Metrics::new();
        let target = Target {
            instance_id: "identity".into(),
            service: "identity".into(),
            address: String::new(),
        };
        let page = "erasure_sagas{state=\"in_progress\"} 2\nerasure_sagas{state=\"completed\"} 5\nerasure_sagas{state=\"failed\"} 1\n";
        metrics.record(&target, parse(page, 10.0));
        assert_eq!(
            metrics.sagas(),
            vec![Sagas {
                instance_id: "identity".into(),
                in_progress: 2,
                completed: 5,
                failed: 1,
            }]
        );
    }

    #[test]
    fn rates_come_from_two_samples() {
        let metrics = Metrics::new();
        let target = Target {
            instance_id: "posting".into(),
            service: "posting".into(),
            address: String::new(),
        };
        metrics.record(&target, parse(PAGE, 10.0));
        let later = PAGE
            .replace("} 90\n", "} 190\n")
            .replace("le=\"0.01\"} 90", "le=\"0.01\"} 190");
        let mut sample = parse(&later, 20.0);
        sample.last_position = Some(12);
        metrics.record(&target, sample);
        let routes = metrics.routes();
        assert_eq!(routes.len(), 1);
        assert!((routes[0].rate - 10.0).abs() < 1e-9, "{routes:?}");
        assert_eq!(routes[0].error_rate, 0.0);
        assert!(routes[0].p99_ms.is_some());
        let (producers, consumers) = metrics.events();
        assert_eq!(producers[0].last_position, 12);
        assert_eq!(consumers[0].source, "posting");
        assert_eq!(consumers[0].position, Some(9));
        assert_eq!(consumers[0].failures, 1.0);
        assert_eq!(metrics.breakers()[0].state, "open");
        assert_eq!(metrics.rates()[0].1.len(), 1);
    }
}
