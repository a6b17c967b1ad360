//! Fault tests of the event path with real processes: while thousands of
//! comments are written, the consumer (notification), the producer
//! (posting) and, on the NATS transport, the broker are killed with SIGKILL
//! at random moments and started again. Afterwards every committed comment
//! has had exactly one effect (one notification), and nothing is dead.
//!
//! The broker killed here is one this test starts on a free port with a
//! store of its own, never a shared one; the test kills only processes it
//! started, by pid.

mod support;

use dure_chassis::auth::Role;
use dure_chassis::testing::{TestUser, TokenIssuer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{free_port, nats_server};

const COMMENTS: usize = 2000;
const WRITERS: usize = 4;

/// A process this test owns: started, killed and started again with the
/// same command line.
struct Process {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
}

impl Process {
    fn new(name: &'static str, program: impl Into<PathBuf>, args: Vec<String>, port: u16) -> Self {
        Self {
            name,
            program: program.into(),
            args,
            port,
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not come up", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_transport_survives_killed_producer_and_consumer() {
    run_with_faults(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_transport_survives_killed_producer_consumer_and_broker() {
    if nats_server().is_none() {
        eprintln!("nats-server is not installed: skipping the NATS fault test");
        return;
    }
    run_with_faults(true).await;
}

async fn run_with_faults(with_nats: bool) {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "dure-faults-{}-{}",
        std::process::id(),
        free_port()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let issuer = TokenIssuer::start().await;
    let dure = env!("CARGO_BIN_EXE_dure");

    let mut broker = None;
    let bus = if with_nats {
        let port = free_port();
        let store = dir.0.join("nats");
        let args = [
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            &store.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let mut server = Process::new("nats-server", nats_server().unwrap(), args, port);
        server.start();
        broker = Some(server);
        format!("nats://127.0.0.1:{port}")
    } else {
        "feed".to_owned()
    };

    let (posting_port, notification_port) = (free_port(), free_port());
    let service = |name: &str, port: u16, extra: &[String]| {
        let mut args = vec![
            "run".to_owned(),
            name.to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--database-url".to_owned(),
            format!("sqlite://{}", db_path(&dir.0, name).display()),
            "--jwks-url".to_owned(),
            issuer.jwks_url.clone(),
            "--bus".to_owned(),
            bus.clone(),
        ];
        args.extend_from_slice(extra);
        args
    };
    let mut posting = Process::new(
        "posting",
        dure,
        service(
            "posting",
            posting_port,
            &["--discovery".into(), "none".into()],
        ),
        posting_port,
    );
    let mut notification = Process::new(
        "notification",
        dure,
        service(
            "notification",
            notification_port,
            &[
                "--peers".into(),
                format!("posting=http://127.0.0.1:{posting_port}"),
            ],
        ),
        notification_port,
    );
    posting.start();
    notification.start();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let author = TestUser::new(&issuer, "Author", Role::User);
    let commenter = TestUser::new(&issuer, "Commenter", Role::User);
    let posting_url = format!("http://127.0.0.1:{posting_port}");
    let created: Value = retry_json(|| {
        client
            .post(format!("{posting_url}/api/postings"))
            .bearer_auth(&author.token)
            .json(&json!({"title": "Under fire", "body": "comment away"}))
            .send()
    })
    .await;
    let posting_id = created["id"].as_str().unwrap().to_owned();

    // Writers: a fixed number of comment attempts; 201s are counted.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (client, acknowledged) = (client.clone(), acknowledged.clone());
            let url = format!("{posting_url}/api/postings/{posting_id}/comments");
            let token = commenter.token.clone();
            tokio::spawn(async move {
                for n in 0..COMMENTS / WRITERS {
                    let sent = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"body": format!("c{n}")}))
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == 201) {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();

    // Chaos: kill one of the processes at random moments, then restart it.
    let chaos = {
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut kills = Vec::new();
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) && round < 9 {
                round += 1;
                std::thread::sleep(Duration::from_millis(250 + (rand_u64() % 500)));
                let choices = if broker.is_some() { 3 } else { 2 };
                let victim = match rand_u64() % choices {
                    0 => &mut notification,
                    1 => &mut posting,
                    _ => broker.as_mut().unwrap(),
                };
                victim.kill();
                kills.push(victim.name);
                std::thread::sleep(Duration::from_millis(100 + (rand_u64() % 300)));
                victim.start();
            }
            (kills, posting, notification, broker)
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (kills, _posting, _notification, _broker) = chaos.await.unwrap();
    assert!(!kills.is_empty(), "nothing was killed");

    // The truth about what was committed is posting's own comment count.
    let committed = retry_json(|| {
        client
            .get(format!("{posting_url}/api/postings/{posting_id}"))
            .send()
    })
    .await["comment_count"]
        .as_i64()
        .unwrap();
    let acknowledged = acknowledged.load(Ordering::SeqCst) as i64;
    assert!(
        acknowledged >= (COMMENTS as i64) / 2,
        "too few writes got through: {acknowledged}"
    );
    assert!(
        committed >= acknowledged,
        "an acknowledged comment was lost: {committed} < {acknowledged}"
    );

    // Every committed comment gets exactly one notification, eventually.
    let notifications_url =
        format!("http://127.0.0.1:{notification_port}/api/notifications?limit=1");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut effects = -1;
    while Instant::now() < deadline {
        if let Ok(response) = client
            .get(&notifications_url)
            .bearer_auth(&author.token)
            .send()
            .await
            && let Ok(page) = response.json::<Value>().await
        {
            effects = page["unread_count"].as_i64().unwrap_or(-1);
            if effects >= committed {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give a late duplicate the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page: Value = client
        .get(&notifications_url)
        .bearer_auth(&author.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    effects = effects.max(page["unread_count"].as_i64().unwrap());
    assert_eq!(
        effects, committed,
        "effects vs committed comments after kills of {kills:?} (acknowledged: {acknowledged})"
    );
    assert_eq!(dead_letters(&db_path(&dir.0, "notification")).await, 0);
    eprintln!(
        "{}: {COMMENTS} attempts, {acknowledged} acknowledged, {committed} committed, {effects} notifications; killed {kills:?}",
        if with_nats { "nats" } else { "feed" }
    );
}

fn db_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.db"))
}

async fn dead_letters(db: &Path) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Retries a request until it answers with JSON (processes restart).
async fn retry_json<F, Fut>(mut send: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    for _ in 0..100 {
        if let Ok(response) = send().await
            && response.status().is_success()
            && let Ok(value) = response.json::<Value>().await
        {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer");
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}
