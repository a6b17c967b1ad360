//! Sends the run's requests and collects what happened to each.
//!
//! Open loop: request `i` is due at `start + i / rate`; it leaves then (or
//! as soon as one of the `connections` slots is free) and its latency runs
//! from when it was due. Closed loop (`--rate max`): each of `connections`
//! clients sends its next request when the last one answered.

use super::Rate;
use super::mix::{Mix, Op};
use super::report::Recorder;
use super::seed::World;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// What a run does.
#[derive(Debug)]
pub struct Plan {
    pub rate: Rate,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub mix: Mix,
}

/// One request's fate.
#[derive(Debug)]
pub struct Done {
    pub op: Op,
    /// From when it was due to when its whole answer arrived.
    pub latency: Duration,
    /// `None` for a 2xx; else the status code or what failed.
    pub failure: Option<String>,
    /// Due inside the measured window (not the warm-up).
    pub measured: bool,
}

impl Done {
    /// The answer to a request of `op` that was due at `due`, now.
    fn now(op: Op, due: Instant, failure: Option<String>, measured_from: Instant) -> Self {
        Self {
            op,
            latency: due.elapsed(),
            failure,
            measured: due >= measured_from,
        }
    }
}

/// One request to send.
#[derive(Debug, Clone, Copy)]
struct Request {
    op: Op,
    posting: usize,
    user: usize,
}

/// Everything the run saw.
#[derive(Debug)]
pub struct Outcome {
    pub recorder: Recorder,
    /// The measured window's length.
    pub window: Duration,
}

pub async fn drive(client: &Client, url: &str, world: &World, plan: &Plan) -> Outcome {
    let world = Arc::new(Targets {
        client: client.clone(),
        url: url.to_owned(),
        authorizations: world.authorizations.clone(),
        postings: world.postings.clone(),
    });
    let start = Instant::now();
    let measured_from = start + plan.warmup;
    let end = measured_from + plan.duration;
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(done_rx, measured_from, plan.duration));
    match plan.rate {
        Rate::PerSecond(rate) => {
            open_loop(&world, plan, rate, start, measured_from, end, done_tx).await
        }
        Rate::Max => closed_loop(&world, plan, measured_from, end, done_tx).await,
    }
    let recorder = collector.await.unwrap_or_default();
    Outcome {
        recorder,
        window: plan.duration,
    }
}

/// Who and what the requests go to.
struct Targets {
    client: Client,
    url: String,
    authorizations: Vec<String>,
    postings: Vec<String>,
}

impl Targets {
    fn pick(&self, mix: &Mix, rng: &mut StdRng) -> Request {
        Request {
            op: mix.pick(rng),
            posting: rng.gen_range(0..self.postings.len()),
            user: rng.gen_range(0..self.authorizations.len()),
        }
    }

    /// Sends one request and reads its whole answer.
    async fn send(&self, request: Request) -> Option<String> {
        let posting = &self.postings[request.posting];
        let builder = match request.op {
            Op::List => self
                .client
                .get(format!("{}/api/postings?limit=10", self.url)),
            Op::Read => self
                .client
                .get(format!("{}/api/postings/{posting}", self.url)),
            Op::Comment => self
                .client
                .post(format!("{}/api/postings/{posting}/comments", self.url))
                .header("authorization", &self.authorizations[request.user])
                .header("content-type", "application/json")
                .body(r#"{"body":"A comment from dure load."}"#),
        };
        match builder.send().await {
            Ok(answer) => {
                let status = answer.status();
                let read = answer.bytes().await;
                match read {
                    Ok(_) if status.is_success() => None,
                    Ok(_) => Some(status.as_u16().to_string()),
                    Err(err) => Some(transport_failure(&err)),
                }
            }
            Err(err) => Some(transport_failure(&err)),
        }
    }
}

fn transport_failure(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connect".to_owned()
    } else {
        "connection".to_owned()
    }
}

async fn open_loop(
    targets: &Arc<Targets>,
    plan: &Plan,
    rate: f64,
    start: Instant,
    measured_from: Instant,
    end: Instant,
    done: mpsc::UnboundedSender<Done>,
) {
    let slots = Arc::new(Semaphore::new(plan.connections));
    let mut rng = StdRng::from_entropy();
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let request = targets.pick(&plan.mix, &mut rng);
        let (targets, done) = (targets.clone(), done.clone());
        tokio::spawn(async move {
            let failure = targets.send(request).await;
            let _ = done.send(Done::now(request.op, due, failure, measured_from));
            drop(slot);
        });
    }
    // Every request in flight has answered once all slots are back.
    let _ = slots.acquire_many(plan.connections as u32).await;
}

async fn closed_loop(
    targets: &Arc<Targets>,
    plan: &Plan,
    measured_from: Instant,
    end: Instant,
    done: mpsc::UnboundedSender<Done>,
) {
    let clients: Vec<_> = (0..plan.connections)
        .map(|_| {
            let (targets, done, mix) = (targets.clone(), done.clone(), plan.mix);
            tokio::spawn(async move {
                let mut rng = StdRng::from_entropy();
                loop {
                    let due = Instant::now();
                    if due >= end {
                        break;
                    }
                    let request = targets.pick(&mix, &mut rng);
                    let failure = targets.send(request).await;
                    let _ = done.send(Done::now(request.op, due, failure, measured_from));
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.await;
    }
}

/// Records every answer and shows a progress line each second (on a
/// terminal; every five seconds otherwise); ends when the senders are done.
async fn collect(
    mut done: mpsc::UnboundedReceiver<Done>,
    measured_from: Instant,
    duration: Duration,
) -> Recorder {
    let mut recorder = Recorder::default();
    let terminal = std::io::stderr().is_terminal();
    let every = Duration::from_secs(if terminal { 1 } else { 5 });
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    let mut answered_at_tick = 0u64;
    loop {
        tokio::select! {
            next = done.recv() => match next {
                Some(answer) => recorder.record(&answer),
                None => break,
            },
            _ = ticks.tick() => {
                let answered = recorder.answered();
                let rate = (answered - answered_at_tick) as f64 / every.as_secs_f64();
                answered_at_tick = answered;
                let phase = match Instant::now().checked_duration_since(measured_from) {
                    None => "warm-up".to_owned(),
                    Some(in_window) => format!(
                        "{:>3}/{} s",
                        in_window.as_secs().min(duration.as_secs()),
                        duration.as_secs()
                    ),
                };
                let line = format!(
                    "dure load: {phase}  {rate:>7.0} answers/s  p99 {:>7.2} ms  errors {}",
                    recorder.p99_ms(),
                    recorder.failed()
                );
                if terminal {
                    eprint!("\r\x1b[2K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
    if terminal {
        eprint!("\r\x1b[2K");
    }
    recorder
}
