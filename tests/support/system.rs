//! A whole system started with `dure up` on free ports, and the steps most
//! system tests take through its gateway.

use super::free_port;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";

/// How `dure up` lays the system out; the same tests run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Each service its own OS process (the default).
    MultiProcess,
    /// Everything in one OS process (`--single-process`).
    SingleProcess,
}

impl Topology {
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Self::MultiProcess => &[],
            Self::SingleProcess => &["--single-process"],
        }
    }
}

/// A running `dure up` and what it printed (stdout and stderr, in the order
/// they were read).
pub struct System {
    pub process: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub gateway: String,
    pub registry: String,
    pub console: String,
    pub data_dir: PathBuf,
}

impl System {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        // A counter, not a port: two tests may be handed the same free port.
        static SYSTEMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "dure-up-test-{}-{}",
            std::process::id(),
            SYSTEMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let (gateway, registry, console) = (free_port(), free_port(), free_port());
        let mut process = Command::new(env!("CARGO_BIN_EXE_dure"))
            .arg("up")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--gateway-listen", &format!("127.0.0.1:{gateway}")])
            .args(["--registry-listen", &format!("127.0.0.1:{registry}")])
            .args(
                (!extra
                    .iter()
                    .any(|a| a.starts_with("--console") || *a == "--no-console"))
                .then(|| ["--console".to_owned(), format!("127.0.0.1:{console}")])
                .into_iter()
                .flatten(),
            )
            .args(extra)
            .env("DURE_HEARTBEAT_INTERVAL", "1s")
            .env_remove("DURE_ADMIN_PASSWORD")
            .env_remove("DURE_DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dure up starts");
        let (lines_tx, lines) = mpsc::channel::<String>();
        let stdout = process.stdout.take().unwrap();
        let stderr = process.stderr.take().unwrap();
        let errors_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // stderr is seen by the test and still shown with its output.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if errors_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut system = Self {
            process,
            lines,
            seen: Vec::new(),
            gateway: format!("http://127.0.0.1:{gateway}"),
            registry: format!("http://127.0.0.1:{registry}"),
            console: format!("http://127.0.0.1:{console}"),
            data_dir,
        };
        assert!(
            system.wait_for("dure is up", Duration::from_secs(60)),
            "not up:\n{}",
            system.seen.join("\n")
        );
        system
    }

    pub fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        self.wait_until(|line| line.contains(needle), within)
    }

    /// Waits until a printed line satisfies `wanted` (one seen before counts).
    pub fn wait_until(&mut self, wanted: impl Fn(&str) -> bool, within: Duration) -> bool {
        if self.seen.iter().any(|l| wanted(l)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let found = wanted(&line);
                self.seen.push(line);
                if found {
                    return true;
                }
            }
        }
        false
    }

    /// Pids of the children whose start line names `label` exactly.
    pub fn pids(&self, label: &str) -> Vec<i32> {
        self.seen
            .iter()
            .filter(|l| l.starts_with(&format!("starting {label} on ")))
            .filter_map(|l| l.split("(pid ").nth(1)?.split(')').next()?.parse().ok())
            .collect()
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM).unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "dure up did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if self.process.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM);
            let _ = self.process.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub async fn login(
    client: &reqwest::Client,
    gateway: &str,
    username: &str,
    password: &str,
) -> String {
    let body: Value = client
        .post(format!("{gateway}/api/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
        .to_owned()
}

/// Signs `ann` up and returns her access token.
pub async fn sign_up_and_login(client: &reqwest::Client, gateway: &str) -> String {
    sign_up_and_login_as(client, gateway, "ann").await
}

/// Signs `username` up (email `<username>@example.com`, [`PASSWORD`]) and
/// returns the user's access token.
pub async fn sign_up_and_login_as(
    client: &reqwest::Client,
    gateway: &str,
    username: &str,
) -> String {
    let response = client
        .post(format!("{gateway}/api/users"))
        .json(&json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    login(client, gateway, username, PASSWORD).await
}

pub async fn instances(client: &reqwest::Client, registry: &str, service: &str) -> usize {
    let catalog: Value = client
        .get(format!("{registry}/v1/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .map_or(0, |s| s["instances"].as_array().unwrap().len())
}

pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
