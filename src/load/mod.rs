//! `dure load`: an open-loop load generator for a running system.
//!
//! Requests leave at a constant arrival rate whatever the system answers,
//! and each one's latency is measured from the moment it was meant to leave,
//! so a stall shows as the queue of late requests it causes (coordinated
//! omission cannot hide a tail). With `--rate max` it runs closed-loop
//! instead, to find the saturation throughput.
//!
//! - [`mix`]: which operations, in which proportions.
//! - [`seed`]: the users and postings a run creates for itself.
//! - [`drive`]: the schedule, the requests and the progress line.
//! - [`report`]: HDR histograms and the text and JSON summaries.
//! - [`processes`]: memory (RSS and PSS) and CPU of every process of a `dure up`.

mod drive;
mod mix;
mod processes;
mod report;
mod seed;

use anyhow::Context;
use mix::Mix;
use std::process::ExitCode;
use std::time::Duration;

/// The longest run: access tokens live 15 minutes and a run does not
/// refresh them.
const MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The gateway of the system to load
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Requests per second, sent on a fixed schedule (open loop); `max` sends
    /// back to back from --connections clients instead (closed loop)
    #[arg(long, value_name = "N|max", default_value = "500", value_parser = parse_rate)]
    pub rate: Rate,
    /// How long to measure (at most 10m)
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = dure_chassis::config::parse_duration)]
    pub duration: Duration,
    /// Load sent before measuring, at the same rate, not counted
    #[arg(long, value_name = "DURATION", default_value = "2s",
          value_parser = dure_chassis::config::parse_duration)]
    pub warmup: Duration,
    /// dsb: 60 % list, 30 % read one, 10 % comment; read: list and read one
    /// (2:1); write: comments only
    #[arg(long, value_name = "MIX", default_value = "dsb", value_parser = ["dsb", "read", "write"])]
    pub mix: String,
    /// Custom weights instead of --mix, e.g. list=50,read=30,comment=20
    #[arg(long, value_name = "OP=N,…")]
    pub weights: Option<String>,
    /// Users the run signs up (each comments as itself)
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub users: u32,
    /// Postings the run creates to read and comment on
    #[arg(long, value_name = "N", default_value = "200", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub postings: u32,
    /// Open loop: most requests in flight at once (beyond it, requests wait
    /// their turn and the wait counts in their latency). Closed loop: the
    /// number of clients
    #[arg(long, value_name = "N", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub connections: u32,
    /// The operator console of the `dure up` under load, for each process's
    /// RSS and CPU (`none` to skip)
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8090")]
    pub console: String,
    /// Print the summary as one JSON object (for scripts)
    #[arg(long)]
    pub json: bool,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Open loop, this many per second.
    PerSecond(f64),
    /// Closed loop, as fast as the system answers.
    Max,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (1.0..=1_000_000.0).contains(&rate) => {
            Ok(Rate::PerSecond(rate))
        }
        _ => Err("a rate from 1 to 1000000 requests per second, or max".to_owned()),
    }
}

pub async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.duration > Duration::ZERO && args.duration <= MAX_DURATION,
        "--duration must be above 0 and at most 10m (access tokens live 15 minutes)"
    );
    let mix = match &args.weights {
        Some(weights) => Mix::parse_weights(weights)?,
        None => Mix::named(&args.mix),
    };
    let url = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.connections as usize)
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")?;
    let console = processes::Console::at(&args.console, &url);

    eprintln!(
        "dure load: seeding {} users and {} postings at {url} …",
        args.users, args.postings
    );
    let world = seed::seed(&client, &url, args.users, args.postings).await?;
    let idle = console.sample(&client).await;
    let plan = drive::Plan {
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections as usize,
        mix,
    };
    let outcome = drive::drive(&client, &url, &world, &plan).await;
    let after = console.sample(&client).await;
    let summary = report::Summary::new(&url, &plan, outcome, processes::compare(idle, after));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", summary.to_text());
    }
    Ok(if summary.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
