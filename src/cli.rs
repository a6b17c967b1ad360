//! The `dure` command line.

use clap::{Parser, Subcommand};
use dure_chassis::service;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "dure",
    version,
    about = "dure: a community platform built as a microservices system",
    long_about = "dure: a community platform built as a microservices system.\n\n\
        `dure up` starts the whole system on this machine; `dure run <service>` runs one \
        service, as a container would; `dure status` shows what the registry knows; \
        `dure load` benchmarks a running system. Every \
        flag can also be set with the DURE_* variable shown in --help, or in ./dure.toml \
        (or the file named by DURE_CONFIG)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the whole system on this machine, each service its own process (or all in one)
    Up(UpArgs),
    /// Run one service in this process (what a container runs)
    #[command(subcommand)]
    Run(Service),
    /// Show the instances the registry knows, their addresses and health
    Status(StatusArgs),
    /// Load a running system at a fixed request rate and report its latency,
    /// errors and (against `dure up`) every process's memory and CPU
    Load(crate::load::LoadArgs),
}

#[derive(Debug, Subcommand)]
pub enum Service {
    /// The service registry (internal)
    Registry(dure_registry::Args),
    /// The API gateway: the public entry point
    Gateway(dure_gateway::Args),
    /// Accounts, login and tokens
    Identity(service::Args<dure_identity::Args>),
    /// Postings and comments
    Posting(service::Args<service::NoArgs>),
    /// Notices from the admins
    Notice(service::Args<service::NoArgs>),
    /// Notifications and their live stream
    Notification(service::Args<service::NoArgs>),
    /// Reports across services, from their events (admins)
    Reporting(service::Args<service::NoArgs>),
    /// The web app: the community's HTML pages
    Web(service::Args<dure_web::Args>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Directory for the services' data (one SQLite file each) and the admin password
    #[arg(
        long,
        env = "DURE_DATA_DIR",
        value_name = "DIR",
        default_value = ".dure"
    )]
    pub data_dir: PathBuf,
    /// A Postgres server for all services, one database each (dure_identity, …),
    /// created if missing; e.g. postgres://postgres@127.0.0.1:5432 [default: SQLite files]
    #[arg(
        long,
        env = "DURE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// The event transport: feed (brokerless) or a NATS JetStream URL such as nats://127.0.0.1:4222
    #[arg(long, env = "DURE_BUS", value_name = "BUS", default_value = "feed")]
    pub bus: String,
    /// More instances of a service, e.g. identity=2 (comma-separated)
    #[arg(long, value_name = "SERVICE=N", value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// Run registry, gateway and every service in this one process (a
    /// modular monolith): each service keeps its own database and outbox,
    /// calls and feeds between them go in process, without sockets
    #[arg(long, env = "DURE_SINGLE_PROCESS", conflicts_with = "replicas")]
    pub single_process: bool,
    /// Where the gateway listens
    #[arg(
        long,
        env = "DURE_GATEWAY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub gateway_listen: SocketAddr,
    /// Where the registry listens
    #[arg(
        long,
        env = "DURE_REGISTRY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8761"
    )]
    pub registry_listen: SocketAddr,
    /// How long a child may take to stop after SIGTERM before it is killed
    #[arg(long, env = "DURE_SHUTDOWN_GRACE", value_name = "DURATION",
          value_parser = dure_chassis::config::parse_duration, default_value = "15s")]
    pub shutdown_grace: std::time::Duration,
    /// How children's log lines are shown: text (readable, prefixed with the
    /// process's name) or json (passed through unchanged, for a log shipper)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Show every child's line at the terminal, each request's included
    /// (by default: starts, stops, warnings and errors)
    #[arg(long, env = "DURE_VERBOSE")]
    pub verbose: bool,
    /// Whether a child that dies is started again (after a pause that
    /// doubles while it keeps dying, up to 30 s)
    #[arg(
        long,
        env = "DURE_RESTART",
        value_name = "POLICY",
        value_enum,
        default_value = "on-failure"
    )]
    pub restart: crate::up::Restart,
    /// Where the operator console listens; off loopback it needs a token
    /// (DURE_CONSOLE_TOKEN, or a random one printed at start)
    #[arg(
        long,
        env = "DURE_CONSOLE",
        value_name = "ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub console: SocketAddr,
    /// Run without the operator console
    #[arg(long, env = "DURE_NO_CONSOLE")]
    pub no_console: bool,
    /// Log lines the console keeps (all processes together)
    #[arg(
        long,
        env = "DURE_CONSOLE_LOG_LINES",
        value_name = "N",
        default_value = "10000"
    )]
    pub console_log_lines: usize,
    /// Traces the console keeps (the newest)
    #[arg(
        long,
        env = "DURE_CONSOLE_TRACES",
        value_name = "N",
        default_value = "500"
    )]
    pub console_traces: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The registry to ask
    #[arg(
        long,
        env = "DURE_REGISTRY_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8761"
    )]
    pub registry_url: String,
}
