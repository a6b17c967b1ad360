//! Helpers shared by the system tests. Each test crate uses a part of them.
#![allow(dead_code)]

pub mod system;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The nats-server binary, where Debian puts it. Without one the NATS tests
/// skip, except under `CI=true`, where a missing server fails them: CI must
/// not pass a suite it did not run.
pub fn nats_server() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    assert!(
        found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "nats-server is missing under CI=true (Debian: apt-get install nats-server)"
    );
    found
}

/// A NATS JetStream server of the test's own: a free port and a fresh store,
/// so that no stream or durable consumer of another run interferes.
pub struct TestNats {
    pub url: String,
    child: Child,
    store: PathBuf,
}

impl TestNats {
    pub fn start() -> Option<Self> {
        let binary = nats_server()?;
        let port = free_port();
        let store =
            std::env::temp_dir().join(format!("dure-test-nats-{}-{port}", std::process::id()));
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            url: format!("nats://127.0.0.1:{port}"),
            child,
            store,
        })
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
