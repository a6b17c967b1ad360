//! Keeps `dure up`'s children running once they are up: restarts one that
//! dies (after a pause that doubles, up to 30 s, while it keeps dying),
//! carries out the console's actions, and samples each process's CPU,
//! memory, readiness and registry lease for the console.

use super::Plan;
use super::child::{Child, Exit, Output};
use crate::proc_stats;
use dure_console::{Action, Processes, Refusal, Resource, State};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The first pause before restarting a process that died.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long before dying starts again at once.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Whether a process that dies is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    /// Start it again after a pause (the default).
    OnFailure,
    /// Leave it dead (and say so).
    Never,
}

/// What the console asks of the supervisor.
#[derive(Debug)]
enum Command {
    Act(usize, Action),
    /// A stopped child is gone; start it again (the second half of restart).
    Respawn(usize),
}

/// One process the supervisor keeps.
struct Slot {
    plan: Plan,
    child: Option<Child>,
    state: State,
    restarts: u32,
    started: Option<Instant>,
    backoff: Duration,
    restart_at: Option<Instant>,
    ready: bool,
    cpu: Option<f64>,
    rss: Option<u64>,
    /// CPU ticks and when they were read, for the next sample's difference.
    ticks: Option<(u64, Instant)>,
}

/// The console's view of the supervisor: the latest snapshot, and a way to
/// ask for actions.
#[derive(Clone)]
pub struct Handle {
    view: Arc<Mutex<Vec<Resource>>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Processes for Handle {
    fn list(&self) -> Vec<Resource> {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn act(&self, instance_id: &str, action: Action) -> Result<(), Refusal> {
        let view = self.list();
        let (index, resource) = view
            .iter()
            .enumerate()
            .find(|(_, r)| r.instance_id == instance_id)
            .ok_or(Refusal::Unknown)?;
        let state = resource.state;
        let allowed = match action {
            Action::Start => state == State::Stopped,
            Action::Stop | Action::Restart => state != State::Stopped,
            Action::Kill => resource.pid.is_some() && state != State::Stopped,
            Action::Pause => matches!(state, State::Starting | State::Running | State::Unready),
            Action::Resume => state == State::Paused,
        };
        if !allowed {
            return Err(Refusal::Conflict(format!(
                "{instance_id} is {}: it cannot {}",
                state.as_str(),
                action.as_str()
            )));
        }
        self.commands
            .send(Command::Act(index, action))
            .map_err(|_| Refusal::Conflict("dure up is stopping".into()))
    }
}

pub struct Supervisor {
    slots: Vec<Slot>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits: mpsc::UnboundedReceiver<Exit>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    view: Arc<Mutex<Vec<Resource>>>,
    output: Output,
    grace: Duration,
    restart: Restart,
    registry: String,
    client: reqwest::Client,
    leases: HashMap<String, String>,
    leases_read: Option<Instant>,
}

impl Supervisor {
    /// Takes over `children`, started from `plans` (in the same order).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plans: Vec<Plan>,
        children: Vec<Child>,
        exits_tx: mpsc::UnboundedSender<Exit>,
        exits: mpsc::UnboundedReceiver<Exit>,
        output: Output,
        grace: Duration,
        restart: Restart,
        registry: String,
    ) -> Self {
        let now = Instant::now();
        let slots = plans
            .into_iter()
            .zip(children)
            .map(|(plan, child)| Slot {
                plan,
                child: Some(child),
                state: State::Running,
                restarts: 0,
                started: Some(now),
                backoff: FIRST_BACKOFF,
                restart_at: None,
                ready: true,
                cpu: None,
                rss: None,
                ticks: None,
            })
            .collect();
        let mut slots: Vec<Slot> = slots;
        slots.iter_mut().for_each(sample);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let supervisor = Self {
            slots,
            exits_tx,
            exits,
            commands_tx,
            commands,
            view: Arc::new(Mutex::new(Vec::new())),
            output,
            grace,
            restart,
            registry,
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap_or_default(),
            leases: HashMap::new(),
            leases_read: None,
        };
        supervisor.publish();
        supervisor
    }

    pub fn handle(&self) -> Handle {
        Handle {
            view: self.view.clone(),
            commands: self.commands_tx.clone(),
        }
    }

    /// Runs until `shutdown`, then stops every child, the gateway first and
    /// the registry last. Answers false when every process had died.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> bool {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let survived = loop {
            tokio::select! {
                () = &mut shutdown => break true,
                Some(exit) = self.exits.recv() => {
                    self.died(&exit);
                    if self.restart == Restart::Never && self.slots.iter().all(|s| s.child.is_none()) {
                        eprintln!("dure: every process has stopped; exiting");
                        break false;
                    }
                }
                Some(command) = self.commands.recv() => self.command(command),
                _ = tick.tick() => self.tick().await,
            }
            self.publish();
        };
        println!("stopping …");
        for slot in self.slots.iter_mut().rev() {
            if let Some(mut child) = slot.child.take() {
                if slot.state == State::Paused {
                    let _ = signal(&child, Signal::SIGCONT);
                }
                child.stop(self.grace).await;
            }
        }
        survived
    }

    fn died(&mut self, exit: &Exit) {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.child.as_ref().and_then(Child::pid) == Some(exit.pid))
        else {
            return;
        };
        super::report_death(slot.child.as_ref(), exit);
        slot.child = None;
        slot.ready = false;
        slot.cpu = None;
        slot.rss = None;
        slot.ticks = None;
        if self.restart == Restart::Never {
            slot.state = State::Stopped;
            return;
        }
        if slot.started.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
            slot.backoff = FIRST_BACKOFF;
        }
        slot.state = State::Restarting;
        slot.restart_at = Some(Instant::now() + slot.backoff);
        println!(
            "dure: restarting {} in {:?} (restart {})",
            slot.plan.label,
            slot.backoff,
            slot.restarts + 1
        );
        slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Act(index, action) => self.act(index, action),
            Command::Respawn(index) => self.spawn(index, true),
        }
    }

    fn act(&mut self, index: usize, action: Action) {
        let grace = self.grace;
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        match action {
            Action::Stop | Action::Restart => {
                let paused = slot.state == State::Paused;
                slot.restart_at = None;
                slot.ready = false;
                let respawn = (action == Action::Restart).then(|| self.commands_tx.clone());
                slot.state = if respawn.is_some() {
                    State::Restarting
                } else {
                    State::Stopped
                };
                let child = slot.child.take();
                println!("console: {} {}", action.as_str(), slot.plan.label);
                tokio::spawn(async move {
                    if let Some(mut child) = child {
                        if paused {
                            let _ = signal(&child, Signal::SIGCONT);
                        }
                        child.stop(grace).await;
                    }
                    if let Some(commands) = respawn {
                        let _ = commands.send(Command::Respawn(index));
                    }
                });
            }
            Action::Start => self.spawn(index, false),
            Action::Kill => {
                println!("console: kill {} (SIGKILL)", slot.plan.label);
                if let Some(child) = &slot.child {
                    let _ = signal(child, Signal::SIGKILL);
                }
            }
            Action::Pause => {
                if let Some(child) = &slot.child
                    && signal(child, Signal::SIGSTOP)
                {
                    println!("console: pause {} (SIGSTOP)", slot.plan.label);
                    slot.state = State::Paused;
                }
            }
            Action::Resume => {
                if let Some(child) = &slot.child
                    && signal(child, Signal::SIGCONT)
                {
                    println!("console: resume {} (SIGCONT)", slot.plan.label);
                    slot.state = if slot.ready {
                        State::Running
                    } else {
                        State::Unready
                    };
                }
            }
        }
    }

    /// Starts the slot's process (again); `restarted` counts it as a restart.
    fn spawn(&mut self, index: usize, restarted: bool) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.child.is_some() {
            return;
        }
        match Child::spawn(
            &slot.plan.label,
            slot.plan.service,
            &slot.plan.env,
            self.output.clone(),
            self.exits_tx.clone(),
        ) {
            Ok(child) => {
                println!(
                    "starting {} on {} (pid {}) …",
                    slot.plan.label,
                    slot.plan.address,
                    child.pid().unwrap_or(0)
                );
                slot.child = Some(child);
                slot.state = State::Starting;
                slot.started = Some(Instant::now());
                slot.restart_at = None;
                if restarted {
                    slot.restarts += 1;
                }
            }
            Err(err) => {
                eprintln!("dure: cannot start {}: {err:#}", slot.plan.label);
                slot.state = State::Restarting;
                slot.restart_at = Some(Instant::now() + slot.backoff);
                slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Once a second: restarts that are due, readiness, CPU and memory, and
    /// (every five seconds) the registry's leases.
    async fn tick(&mut self) {
        let now = Instant::now();
        for index in 0..self.slots.len() {
            if self.slots[index].restart_at.is_some_and(|at| at <= now) {
                self.spawn(index, true);
            }
        }
        let checks = self.slots.iter().map(|slot| {
            let client = self.client.clone();
            let url = format!("http://{}/readyz", slot.plan.address);
            let alive = slot.child.is_some() && slot.state != State::Paused;
            async move {
                alive
                    && client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
            }
        });
        let readiness = futures_util::future::join_all(checks).await;
        for (slot, ready) in self.slots.iter_mut().zip(readiness) {
            sample(slot);
            if slot.child.is_none() || slot.state == State::Paused {
                continue;
            }
            slot.ready = ready;
            slot.state = match (slot.state, ready) {
                (_, true) => State::Running,
                (State::Starting, false) => State::Starting,
                (_, false) => State::Unready,
            };
        }
        if self
            .leases_read
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
        {
            self.leases_read = Some(Instant::now());
            if let Some(leases) = leases(&self.client, &self.registry).await {
                self.leases = leases;
            }
        }
    }

    fn publish(&self) {
        let resources = self
            .slots
            .iter()
            .map(|slot| Resource {
                service: slot.plan.service.to_owned(),
                instance_id: slot.plan.label.clone(),
                pid: slot.child.as_ref().and_then(Child::pid),
                address: format!("http://{}", slot.plan.address),
                state: slot.state,
                restarts: slot.restarts,
                uptime_secs: slot
                    .child
                    .as_ref()
                    .and(slot.started)
                    .map(|t| t.elapsed().as_secs()),
                cpu_percent: slot.cpu,
                rss_bytes: slot.rss,
                ready: slot.ready,
                lease: self
                    .leases
                    .get(&format!("http://{}", slot.plan.address))
                    .cloned(),
            })
            .collect();
        if let Ok(mut view) = self.view.lock() {
            *view = resources;
        }
    }
}

fn signal(child: &Child, signal: Signal) -> bool {
    child
        .pid()
        .and_then(|pid| i32::try_from(pid).ok())
        .is_some_and(|pid| kill(Pid::from_raw(pid), signal).is_ok())
}

/// CPU (percent of one core since the last sample) and resident memory.
fn sample(slot: &mut Slot) {
    let Some(pid) = slot.child.as_ref().and_then(Child::pid) else {
        return;
    };
    slot.rss = proc_stats::rss_bytes(pid);
    if let Some(ticks) = proc_stats::cpu_ticks(pid) {
        let now = Instant::now();
        if let Some((before, at)) = slot.ticks {
            let seconds = now.duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                let used = ticks.saturating_sub(before) as f64 / proc_stats::TICKS_PER_SECOND;
                slot.cpu = Some((used / seconds * 1000.0).round() / 10.0);
            }
        }
        slot.ticks = Some((ticks, now));
    }
}

/// Address → instance id of every lease the registry holds.
async fn leases(client: &reqwest::Client, registry: &str) -> Option<HashMap<String, String>> {
    let catalog: serde_json::Value = client
        .get(format!("{registry}/v1/services"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut leases = HashMap::new();
    for service in catalog["services"].as_array()? {
        for instance in service["instances"].as_array().into_iter().flatten() {
            if let (Some(address), Some(id)) = (
                instance["address"].as_str(),
                instance["instance_id"].as_str(),
            ) {
                leases.insert(address.trim_end_matches('/').to_owned(), id.to_owned());
            }
        }
    }
    Some(leases)
}
