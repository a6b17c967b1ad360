//! The measuring side of `bench/events`: commit-to-effect latency and
//! sustained throughput of the event path, for the `feed` and `nats`
//! transports in one invocation.
//!
//! For each transport it starts posting and notification (release `dure`
//! binary) on fresh SQLite files, and for `nats` a nats-server of its own.
//! Each comment is written by a user named after its sequence number, so the
//! notification it causes can be matched on the author's live stream. The
//! latency of one event is the time from posting's 201 (after its commit) to
//! the notification's arrival on the stream, so it includes the stream's own
//! hop; it over-states commit-to-effect slightly, never under-states it.
//!
//! `cargo run --release --example bench_events -- target/release/dure [nats-server]`

use dure_chassis::auth::Role;
use dure_chassis::testing::TokenIssuer;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: u64 = 500;
const PACED_SECONDS: u64 = 10;
const BURST: usize = 3000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dure: PathBuf = args
        .next()
        .unwrap_or_else(|| "target/release/dure".into())
        .into();
    let nats_server: Option<PathBuf> = args.next().map(Into::into);
    let mut transports = vec!["feed"];
    if nats_server.is_some() {
        transports.push("nats");
    }
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>16}",
        "bus", "p50 ms", "p99 ms", "paced ev/s", "burst ev/s"
    );
    for transport in transports {
        let result = measure(&dure, transport, nats_server.as_ref()).await?;
        println!(
            "{:<6} {:>12.2} {:>12.2} {:>12.0} {:>16.0}",
            transport, result.p50, result.p99, result.paced_rate, result.burst_rate
        );
    }
    println!(
        "(paced: {RATE} comments/s for {PACED_SECONDS} s; burst: {BURST} comments as fast as 16 writers go)"
    );
    Ok(())
}

struct Figures {
    p50: f64,
    p99: f64,
    paced_rate: f64,
    burst_rate: f64,
}

async fn measure(
    dure: &PathBuf,
    transport: &str,
    nats_server: Option<&PathBuf>,
) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!(
        "dure-bench-events-{}-{transport}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let issuer = TokenIssuer::start().await;
    let mut running = Running(Vec::new());
    let bus = if transport == "nats" {
        let port = free_port();
        let server = nats_server.expect("a nats-server for the nats transport");
        running.0.push(
            Command::new(server)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.join("nats"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_port(port);
        format!("nats://127.0.0.1:{port}")
    } else {
        "feed".into()
    };
    let (posting_port, notification_port) = (free_port(), free_port());
    for (name, port, extra) in [
        (
            "posting",
            posting_port,
            vec!["--discovery".to_owned(), "none".to_owned()],
        ),
        (
            "notification",
            notification_port,
            vec![
                "--peers".to_owned(),
                format!("posting=http://127.0.0.1:{posting_port}"),
            ],
        ),
    ] {
        running.0.push(
            Command::new(dure)
                .args(["run", name, "--listen", &format!("127.0.0.1:{port}")])
                .args([
                    "--database-url",
                    &format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                ])
                .args(["--jwks-url", &issuer.jwks_url, "--bus", &bus])
                .args(&extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_port(port);
    }
    let client = reqwest::Client::new();
    let author = issuer.token(&uuid::Uuid::now_v7().to_string(), "Author", Role::User);
    let posting: Value = client
        .post(format!("http://127.0.0.1:{posting_port}/api/postings"))
        .bearer_auth(&author)
        .json(&json!({"title": "bench", "body": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let comments_url = format!(
        "http://127.0.0.1:{posting_port}/api/postings/{}/comments",
        posting["id"].as_str().unwrap()
    );

    // The author's live stream: arrival time per comment sequence number.
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut stream = client
        .get(format!(
            "http://127.0.0.1:{notification_port}/api/notifications/stream"
        ))
        .bearer_auth(&author)
        .send()
        .await?;
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                let now = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    // The title starts with the commenter's name: "c<n> commented …".
                    if let Some(n) = event
                        .split("\"title\":\"c")
                        .nth(1)
                        .and_then(|t| t.split(' ').next())
                        && let Ok(n) = n.parse::<u64>()
                    {
                        arrivals.lock().unwrap().entry(n).or_insert(now);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Paced: RATE comments a second; latency from each 201 to its arrival.
    let acks: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let paced_total = RATE * PACED_SECONDS;
    let started = Instant::now();
    let mut sends = Vec::new();
    for n in 0..paced_total {
        ticker.tick().await;
        sends.push(comment(&client, &issuer, &comments_url, n, acks.clone()));
    }
    futures_util::future::join_all(sends).await;
    let paced_elapsed = started.elapsed();
    wait_for(&arrivals, paced_total as usize, Duration::from_secs(30)).await;
    let mut latencies: Vec<f64> = {
        let (acks, arrivals) = (acks.lock().unwrap(), arrivals.lock().unwrap());
        acks.iter()
            .filter_map(|(n, ack)| {
                arrivals
                    .get(n)
                    .map(|at| at.saturating_duration_since(*ack).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    latencies.sort_by(f64::total_cmp);
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let (p50, p99) = (percentile(0.50), percentile(0.99));
    let paced_rate = paced_total as f64 / paced_elapsed.as_secs_f64();

    // Burst: as fast as 16 writers go; events per second until the last arrives.
    let burst_start = Instant::now();
    let first = paced_total;
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let (client, url, acks) = (client.clone(), comments_url.clone(), acks.clone());
            let tokens: Vec<(u64, String)> = (0..(BURST as u64 / 16))
                .map(|i| {
                    let n = first + w * (BURST as u64 / 16) + i;
                    (
                        n,
                        issuer.token(
                            &uuid::Uuid::now_v7().to_string(),
                            &format!("c{n}"),
                            Role::User,
                        ),
                    )
                })
                .collect();
            tokio::spawn(async move {
                for (n, token) in tokens {
                    post_comment(&client, &url, &token, n, &acks).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await?;
    }
    wait_for(
        &arrivals,
        paced_total as usize + BURST,
        Duration::from_secs(60),
    )
    .await;
    let last_arrival = arrivals
        .lock()
        .unwrap()
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    let burst_rate = BURST as f64
        / last_arrival
            .saturating_duration_since(burst_start)
            .as_secs_f64();
    reader.abort();
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        p50,
        p99,
        paced_rate,
        burst_rate,
    })
}

fn comment(
    client: &reqwest::Client,
    issuer: &TokenIssuer,
    url: &str,
    n: u64,
    acks: Arc<Mutex<HashMap<u64, Instant>>>,
) -> tokio::task::JoinHandle<()> {
    let token = issuer.token(
        &uuid::Uuid::now_v7().to_string(),
        &format!("c{n}"),
        Role::User,
    );
    let (client, url) = (client.clone(), url.to_owned());
    tokio::spawn(async move { post_comment(&client, &url, &token, n, &acks).await })
}

async fn post_comment(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: u64,
    acks: &Mutex<HashMap<u64, Instant>>,
) {
    let sent = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({"body": "x"}))
        .send()
        .await;
    if sent.is_ok_and(|r| r.status() == 201) {
        acks.lock().unwrap().insert(n, Instant::now());
    }
}

async fn wait_for(arrivals: &Mutex<HashMap<u64, Instant>>, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while arrivals.lock().unwrap().len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
