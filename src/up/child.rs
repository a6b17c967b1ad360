//! One supervised child process: spawned with `dure run <service>`, its
//! lines kept for the console and for the report if it dies, and shown on
//! our output with a coloured prefix: starts, stops, warnings and errors,
//! not every request (`--verbose` shows those too).

use super::logs;
use anyhow::Context;
use dure_console::LogBuffer;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

/// Lines kept per child for the death report.
const KEPT_LINES: usize = 20;

const COLOURS: &[&str] = &[
    "\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m", "\x1b[31m",
];

/// A child that exited without being asked to.
#[derive(Debug)]
pub struct Exit {
    pub label: String,
    pub pid: u32,
    pub status: String,
}

/// Where a child's lines go.
#[derive(Clone)]
pub struct Output {
    /// Pass lines through unchanged (`--log-format json`).
    pub raw: bool,
    /// Show every line, requests included.
    pub verbose: bool,
    /// The console's buffer, if there is a console.
    pub logs: Option<Arc<LogBuffer>>,
}

pub struct Child {
    pid: Option<u32>,
    last_lines: Arc<Mutex<VecDeque<String>>>,
    /// Tells the watcher the exit is expected; yields the exit status.
    stop_tx: Option<oneshot::Sender<oneshot::Sender<Option<ExitStatus>>>>,
}

impl Child {
    pub fn spawn(
        label: &str,
        service: &str,
        env: &[(String, String)],
        output: Output,
        exits: mpsc::UnboundedSender<Exit>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the dure binary")?;
        let mut command = Command::new(exe);
        command
            .args(["run", service])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command
            .spawn()
            .with_context(|| format!("cannot start {service}"))?;
        let pid = process.id();

        let last_lines = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        let colour = COLOURS[label.bytes().map(usize::from).sum::<usize>() % COLOURS.len()];
        let prefix = if std::io::stdout().is_terminal() {
            format!("{colour}{label:>12}\x1b[0m |")
        } else {
            format!("{label:>12} |")
        };
        let pump_to = |stream| Pump {
            label: label.to_owned(),
            prefix: prefix.clone(),
            last_lines: last_lines.clone(),
            output: output.clone(),
            stream,
        };
        if let Some(stdout) = process.stdout.take() {
            tokio::spawn(pump_to(Box::new(stdout) as Box<dyn AsyncRead + Send + Unpin>).run());
        }
        if let Some(stderr) = process.stderr.take() {
            tokio::spawn(pump_to(Box::new(stderr)).run());
        }

        let (stop_tx, stop_rx) = oneshot::channel::<oneshot::Sender<Option<ExitStatus>>>();
        let label = label.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                status = process.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    let _ = exits.send(Exit { label, pid: pid.unwrap_or(0), status });
                }
                Ok(reply) = stop_rx => {
                    let status = process.wait().await.ok();
                    let _ = reply.send(status);
                }
            }
        });
        Ok(Self {
            pid,
            last_lines,
            stop_tx: Some(stop_tx),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn last_lines(&self) -> Vec<String> {
        self.last_lines
            .lock()
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let (Some(pid), Some(stop_tx)) = (self.pid, self.stop_tx.take()) else {
            return;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if stop_tx.send(reply_tx).is_err() {
            return; // already exited and reported
        }
        let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        tokio::pin!(reply_rx);
        if tokio::time::timeout(grace, &mut reply_rx).await.is_err() {
            eprintln!("dure: pid {pid} did not stop within {grace:?}; killing it");
            let _ = kill(pid, Signal::SIGKILL);
            let _ = reply_rx.await;
        }
    }
}

/// One of a child's output streams, and where its lines go.
struct Pump {
    label: String,
    prefix: String,
    last_lines: Arc<Mutex<VecDeque<String>>>,
    output: Output,
    stream: Box<dyn AsyncRead + Send + Unpin>,
}

impl Pump {
    async fn run(self) {
        let mut lines = BufReader::new(self.stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Parsed once for the terminal, the death report and the console.
            let record = dure_console::logs::json_object(&line);
            let rendered = logs::render(&line, record.as_ref());
            if self.output.raw {
                println!("{line}");
            } else if self.output.verbose || logs::worth_showing(record.as_ref()) {
                println!("{} {rendered}", self.prefix);
            }
            if let Some(buffer) = &self.output.logs {
                buffer.push_record(&self.label, &line, record);
            }
            if let Ok(mut kept) = self.last_lines.lock() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(rendered);
            }
        }
    }
}
