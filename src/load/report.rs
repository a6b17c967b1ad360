//! Latency histograms (HDR, microseconds, three significant digits) and the
//! run's summary as text or JSON.

use super::Rate;
use super::drive::{Done, Outcome, Plan};
use super::mix::Op;
use super::processes::Figures;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The longest latency a histogram holds exactly; longer ones count as it.
const HIGHEST_MICROS: u64 = 120_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// What the answers looked like, as they arrive.
#[derive(Debug)]
pub struct Recorder {
    all: Histogram<u64>,
    by_op: [Histogram<u64>; 3],
    /// Measured failures by status code or kind.
    failures: BTreeMap<String, u64>,
    warmup_requests: u64,
    warmup_failures: u64,
    answered: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            all: histogram(),
            by_op: [histogram(), histogram(), histogram()],
            failures: BTreeMap::new(),
            warmup_requests: 0,
            warmup_failures: 0,
            answered: 0,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, done: &Done) {
        self.answered += 1;
        if !done.measured {
            self.warmup_requests += 1;
            self.warmup_failures += u64::from(done.failure.is_some());
            return;
        }
        let micros = u64::try_from(done.latency.as_micros()).unwrap_or(u64::MAX);
        self.all.saturating_record(micros.max(1));
        self.by_op[done.op.index()].saturating_record(micros.max(1));
        if let Some(failure) = &done.failure {
            *self.failures.entry(failure.clone()).or_default() += 1;
        }
    }

    /// Answers so far, the warm-up's included.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Failed requests so far, the warm-up's included.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum::<u64>() + self.warmup_failures
    }

    pub fn p99_ms(&self) -> f64 {
        ms(self.all.value_at_quantile(0.99))
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// A finished run.
#[derive(Debug)]
pub struct Summary {
    url: String,
    pacing: String,
    target_rate: Option<f64>,
    duration_secs: f64,
    warmup_secs: f64,
    mix: String,
    recorder: Recorder,
    processes: Option<Vec<Figures>>,
}

impl Summary {
    pub fn new(url: &str, plan: &Plan, outcome: Outcome, processes: Option<Vec<Figures>>) -> Self {
        let (pacing, target_rate) = match plan.rate {
            Rate::PerSecond(rate) => (format!("open loop at {rate} req/s"), Some(rate)),
            Rate::Max => (format!("closed loop, {} clients", plan.connections), None),
        };
        Self {
            url: url.to_owned(),
            pacing,
            target_rate,
            duration_secs: outcome.window.as_secs_f64(),
            warmup_secs: plan.warmup.as_secs_f64(),
            mix: plan.mix.to_string(),
            recorder: outcome.recorder,
            processes,
        }
    }

    pub fn failed(&self) -> u64 {
        self.recorder.failed()
    }

    fn rate_of(&self, histogram: &Histogram<u64>) -> f64 {
        histogram.len() as f64 / self.duration_secs
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dure load: {}, {} for {} s (after {} s warm-up); {}",
            self.url, self.pacing, self.duration_secs, self.warmup_secs, self.mix
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let rows = std::iter::once(("all", &self.recorder.all)).chain(
            Op::ALL
                .iter()
                .map(|op| (op.name(), &self.recorder.by_op[op.index()]))
                .filter(|(_, h)| !h.is_empty()),
        );
        for (name, h) in rows {
            let _ = writeln!(
                out,
                "{name:<9} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
                h.len(),
                self.rate_of(h),
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.90)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            );
        }
        if let Some(target) = self.target_rate {
            let achieved = self.rate_of(&self.recorder.all);
            if achieved < target * 0.95 {
                let _ = writeln!(
                    out,
                    "\nachieved {achieved:.0} of {target} req/s: the system (or this machine) \
                     could not keep up; the latencies include the wait"
                );
            }
        }
        let errors = if self.recorder.failures.is_empty() {
            "none".to_owned()
        } else {
            self.recorder
                .failures
                .iter()
                .map(|(kind, n)| format!("{kind} × {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "\nerrors: {errors}");
        if self.recorder.warmup_failures > 0 {
            let _ = writeln!(
                out,
                "warm-up: {} of {} requests failed",
                self.recorder.warmup_failures, self.recorder.warmup_requests
            );
        }
        if self.recorder.failures.contains_key("429") {
            let _ = writeln!(
                out,
                "(429: the gateway limits each client address to DURE_RATE_LIMIT requests/s, \
                 default 1000; start the system with DURE_RATE_LIMIT=0 to load it harder)"
            );
        }
        match &self.processes {
            Some(processes) => self.write_processes(&mut out, processes),
            None => {
                let _ = writeln!(
                    out,
                    "\nprocesses: unknown (no `dure up` console answered; see --console)"
                );
            }
        }
        out
    }

    fn write_processes(&self, out: &mut String, processes: &[Figures]) {
        let mb = |bytes: Option<u64>| {
            bytes.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
        };
        let line = |out: &mut String, name: &str, pid: &str, mbs: [String; 4], cpu: String| {
            let [rss_before, rss_after, pss_before, pss_after] = mbs;
            let _ = writeln!(
                out,
                "{name:<16} {pid:>8} {rss_before:>11} {rss_after:>10} {pss_before:>11} {pss_after:>10} {cpu:>7}",
            );
        };
        let _ = writeln!(
            out,
            "\n{:<16} {:>8} {:>22} {:>22}",
            "", "", "RSS MB", "PSS MB"
        );
        line(
            out,
            "process",
            "pid",
            ["before", "after", "before", "after"].map(str::to_owned),
            "CPU %".to_owned(),
        );
        for p in processes {
            line(
                out,
                &p.name,
                &p.pid.to_string(),
                [p.rss_before, p.rss_after, p.pss_before, p.pss_after].map(mb),
                p.cpu_percent.map_or("-".to_owned(), |c| format!("{c:.1}")),
            );
        }
        let system: Vec<&Figures> = processes.iter().filter(|p| p.name != "dure load").collect();
        let sum = |f: fn(&Figures) -> Option<u64>| system.iter().map(|p| f(p)).sum::<Option<u64>>();
        let cpu: Option<f64> = system.iter().map(|p| p.cpu_percent).sum();
        line(
            out,
            "system (total)",
            "",
            [
                sum(|p| p.rss_before),
                sum(|p| p.rss_after),
                sum(|p| p.pss_before),
                sum(|p| p.pss_after),
            ]
            .map(mb),
            cpu.map_or("-".to_owned(), |c| format!("{c:.1}")),
        );
        let _ = writeln!(
            out,
            "(PSS counts a page shared by n processes, such as the binary's code, 1/n in each:\n \
             its total is the system's memory; the RSS total counts shared pages once per process)"
        );
    }

    pub fn to_json(&self) -> Value {
        let latency = |h: &Histogram<u64>| {
            json!({
                "requests": h.len(),
                "rate": self.rate_of(h),
                "p50_ms": ms(h.value_at_quantile(0.50)),
                "p90_ms": ms(h.value_at_quantile(0.90)),
                "p99_ms": ms(h.value_at_quantile(0.99)),
                "p999_ms": ms(h.value_at_quantile(0.999)),
                "max_ms": ms(h.max()),
                "mean_ms": h.mean() / 1000.0,
            })
        };
        let by_operation: serde_json::Map<String, Value> = Op::ALL
            .iter()
            .map(|op| (op.name().to_owned(), &self.recorder.by_op[op.index()]))
            .filter(|(_, h)| !h.is_empty())
            .map(|(name, h)| (name, latency(h)))
            .collect();
        let processes = self.processes.as_ref().map(|processes| {
            processes
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "pid": p.pid,
                        "rss_before_bytes": p.rss_before,
                        "rss_after_bytes": p.rss_after,
                        "pss_before_bytes": p.pss_before,
                        "pss_after_bytes": p.pss_after,
                        "cpu_percent": p.cpu_percent,
                    })
                })
                .collect::<Vec<_>>()
        });
        json!({
            "url": self.url,
            "pacing": self.pacing,
            "target_rate": self.target_rate,
            "duration_secs": self.duration_secs,
            "warmup_secs": self.warmup_secs,
            "mix": self.mix,
            "all": latency(&self.recorder.all),
            "by_operation": by_operation,
            "errors": self.recorder.failures,
            "warmup": {
                "requests": self.recorder.warmup_requests,
                "failed": self.recorder.warmup_failures,
            },
            "processes": processes,
        })
    }
}
