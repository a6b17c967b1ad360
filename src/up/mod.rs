//! `dure up`: the whole system on this machine, one child process per
//! service (the same `dure` binary, `dure run <service>`).
//!
//! It starts the registry (on 8761), then every service (on free ports,
//! registering themselves), then the gateway (on 8080), shows their start-up, waits until
//! each answers `/readyz`, prints a table, then streams the children's logs
//! prefixed with their names (starts, stops, warnings and errors; not every
//! request). ctrl-c or SIGTERM stops the children gracefully (SIGTERM, then
//! SIGKILL after the grace period). A child that dies is reported loudly
//! with its last log lines and started again. The operator console
//! (`dure_console`, on 8090) shows every process and its logs and acts on
//! them.
//!
//! With `--single-process` the same system runs inside this process
//! instead (see [`single`]).
//!
//! - [`child`]: one child process and its log pump.
//! - [`supervisor`]: restarts, the console's actions, CPU/RSS/readiness.
//! - [`logs`]: turns a child's JSON log line into a readable one.
//! - [`secrets`]: the generated first-admin password.
//! - [`single`]: the single-process topology (modular monolith).

mod child;
mod logs;
mod secrets;
mod single;
mod supervisor;

pub use supervisor::Restart;

use crate::cli::UpArgs;
use anyhow::Context;
use child::{Child, Exit, Output};
use dure_chassis::service::Service;
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a child may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The services `dure up` runs between the registry and the gateway.
const SERVICES: &[&str] = &[
    <dure_identity::Identity as Service>::NAME,
    <dure_posting::Board as Service>::NAME,
    <dure_notice::Notices as Service>::NAME,
    <dure_notification::Notifications as Service>::NAME,
    <dure_reporting::Reports as Service>::NAME,
    <dure_web::Web as Service>::NAME,
];

/// One process `dure up` will start.
#[derive(Clone)]
struct Plan {
    service: &'static str,
    /// `identity` or, with replicas, `identity-2`.
    label: String,
    address: SocketAddr,
    env: Vec<(String, String)>,
}

pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.single_process {
        return single::up(args).await;
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let replicas = replicas(&args.replicas)?;
    ensure_free(args.registry_listen, "the registry", "--registry-listen")?;
    ensure_free(args.gateway_listen, "the gateway", "--gateway-listen")?;
    if !args.no_console {
        ensure_free(args.console, "the console", "--console")?;
    }
    let registry_url = format!("http://{}", args.registry_listen);
    let console = ConsolePlan::of(&args);

    // Three waves: the registry, then the services, then the gateway.
    let mut waves: Vec<Vec<Plan>> = vec![vec![Plan {
        service: dure_registry::NAME,
        label: dure_registry::NAME.into(),
        address: args.registry_listen,
        env: console.env(common_env(&args, args.registry_listen)),
    }]];
    let mut services = Vec::new();
    for &service in SERVICES {
        let count = replicas.get(service).copied().unwrap_or(1);
        for replica in 1..=count {
            let mut plan = service_plan(&args, service, replica, &registry_url).await?;
            plan.env = console.env(plan.env);
            services.push(plan);
        }
    }
    waves.push(services);
    let mut gateway_env = console.env(common_env(&args, args.gateway_listen));
    gateway_env.push(("DURE_REGISTRY_URL".into(), registry_url.clone()));
    waves.push(vec![Plan {
        service: dure_gateway::NAME,
        label: dure_gateway::NAME.into(),
        address: args.gateway_listen,
        env: gateway_env,
    }]);

    let logs = (!args.no_console)
        .then(|| std::sync::Arc::new(dure_console::LogBuffer::new(args.console_log_lines)));
    let output = Output {
        raw: args.log_format == "json",
        verbose: args.verbose,
        logs: logs.clone(),
    };
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<Exit>();
    let mut children: Vec<Child> = Vec::new();
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("HTTP client")?;
    for wave in &waves {
        for plan in wave {
            let child = Child::spawn(
                &plan.label,
                plan.service,
                &plan.env,
                output.clone(),
                exits_tx.clone(),
            )?;
            println!(
                "starting {} on {} (pid {}) …",
                plan.label,
                plan.address,
                child.pid().unwrap_or(0)
            );
            children.push(child);
        }
        let readiness = futures_util::future::join_all(wave.iter().map(|plan| {
            let client = client.clone();
            async move {
                let ready = wait_ready(&client, &format!("http://{}/readyz", plan.address)).await;
                if ready {
                    println!(
                        "{} ready after {:.1}s",
                        plan.label,
                        started.elapsed().as_secs_f64()
                    );
                }
                (plan.label.clone(), ready)
            }
        }));
        tokio::select! {
            outcomes = readiness => {
                if let Some((label, _)) = outcomes.iter().find(|(_, ready)| !ready) {
                    eprintln!("dure: {label} did not become ready within {START_TIMEOUT:?}");
                    stop_all(&mut children, args.shutdown_grace).await;
                    return Ok(ExitCode::FAILURE);
                }
            }
            Some(exit) = exits.recv() => {
                let child = children.iter().find(|c| c.pid() == Some(exit.pid));
                report_death(child, &exit);
                stop_all(&mut children, args.shutdown_grace).await;
                return Ok(ExitCode::FAILURE);
            }
        }
    }

    let plans: Vec<Plan> = waves.into_iter().flatten().collect();
    let supervisor = supervisor::Supervisor::new(
        plans.clone(),
        children,
        exits_tx,
        exits,
        output,
        args.shutdown_grace,
        args.restart,
        registry_url,
    );
    let (console_stop, console_stopped) = tokio::sync::oneshot::channel::<()>();
    let console = match &logs {
        Some(logs) => Some(
            start_console(
                &args,
                &console,
                supervisor.handle(),
                logs.clone(),
                console_stopped,
            )
            .await?,
        ),
        None => None,
    };
    print_table(
        &plans,
        args.gateway_listen,
        console.as_ref().map(|c| c.url.as_str()),
        started.elapsed(),
    );

    // Run until asked to stop; the supervisor restarts a child that dies and
    // stops them all at the end, the gateway first and the registry last:
    // nothing is routed to a stopped service, and services can deregister on
    // their way out.
    let survived = supervisor.run(dure_chassis::http::shutdown_signal()).await;
    let _ = console_stop.send(());
    if let Some(console) = console {
        let _ = console.task.await;
    }
    if !survived {
        return Ok(ExitCode::FAILURE);
    }
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running console: where it is, and its server's task.
struct RunningConsole {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

/// What the console needs decided before the children start: its token,
/// and where the children send their traces.
struct ConsolePlan {
    enabled: bool,
    /// Required off loopback: `DURE_CONSOLE_TOKEN`, or a random one.
    token: Option<String>,
    /// The OTLP endpoint `dure up` gives the children: the console's own
    /// receiver, unless `OTEL_EXPORTER_OTLP_*ENDPOINT` was set (then the
    /// children get that, unchanged, from the environment).
    otlp: Option<String>,
    elsewhere: Option<String>,
}

impl ConsolePlan {
    fn of(args: &UpArgs) -> Self {
        let enabled = !args.no_console;
        let token = (enabled && !args.console.ip().is_loopback()).then(|| {
            std::env::var("DURE_CONSOLE_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(dure_console::guard::random_token)
        });
        let elsewhere = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
        let reachable = if args.console.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], args.console.port()))
        } else {
            args.console
        };
        Self {
            enabled,
            token,
            otlp: (enabled && elsewhere.is_none()).then(|| format!("http://{reachable}")),
            elsewhere,
        }
    }

    /// A child's environment, with the trace export pointed at the console.
    fn env(&self, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
        if let Some(endpoint) = &self.otlp {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()));
            if let Some(token) = &self.token {
                env.push((
                    "OTEL_EXPORTER_OTLP_HEADERS".into(),
                    format!("authorization=Bearer%20{token}"),
                ));
            }
        }
        env
    }
}

/// Serves the console on `--console`; off loopback with the plan's token.
async fn start_console(
    args: &UpArgs,
    plan: &ConsolePlan,
    processes: supervisor::Handle,
    logs: std::sync::Arc<dure_console::LogBuffer>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<RunningConsole> {
    debug_assert!(plan.enabled);
    let url = match &plan.token {
        Some(token) => format!("http://{}/?token={token}", args.console),
        None => format!("http://{}", args.console),
    };
    let listener = tokio::net::TcpListener::bind(args.console)
        .await
        .with_context(|| format!("the console cannot listen on {}", args.console))?;
    let sources = dure_console::Sources {
        processes: std::sync::Arc::new(processes),
        logs,
        traces: std::sync::Arc::new(dure_console::TraceStore::new(args.console_traces)),
        metrics: std::sync::Arc::new(dure_console::Metrics::new()),
        traces_elsewhere: plan.elsewhere.clone(),
    };
    let console = dure_console::Console::new(sources, plan.token.clone());
    let scraper = console.spawn_scraper();
    let task = tokio::spawn(async move {
        let _scraper = AbortOnDrop(scraper);
        let stopped = async move {
            let _ = stop.await;
        };
        if let Err(err) = dure_console::serve(listener, console, stopped).await {
            eprintln!("dure: the console stopped: {err}");
        }
    });
    Ok(RunningConsole { url, task })
}

/// `identity=2,posting=3` → counts; unknown services and zero are errors.
fn replicas(specs: &[String]) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for spec in specs.iter().filter(|s| !s.trim().is_empty()) {
        let (service, count) = spec
            .split_once('=')
            .with_context(|| format!("--replicas takes SERVICE=N, got {spec:?}"))?;
        let service = service.trim();
        anyhow::ensure!(
            SERVICES.contains(&service),
            "--replicas: {service:?} is not a service (choose from {})",
            SERVICES.join(", ")
        );
        let count: usize = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .with_context(|| format!("--replicas: the count for {service} must be 1 to 16"))?;
        counts.insert(service.to_owned(), count);
    }
    Ok(counts)
}

/// Ports handed to a process of this `dure up`, asked for or picked.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn hand_out(port: u16) -> bool {
    HANDED_OUT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(port)
}

fn ensure_free(address: SocketAddr, what: &str, flag: &str) -> anyhow::Result<()> {
    hand_out(address.port());
    TcpListener::bind(address).map(drop).map_err(|err| {
        anyhow::anyhow!(
            "{what} cannot listen on {address}: {err}. Another program (or another `dure up`) is using it; \
             stop it or choose another address with {flag}"
        )
    })
}

fn common_env(args: &UpArgs, address: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("DURE_LISTEN".to_owned(), address.to_string()),
        (
            "DURE_DATA_DIR".to_owned(),
            args.data_dir.display().to_string(),
        ),
        ("DURE_LOG_FORMAT".to_owned(), "json".to_owned()),
    ]
}

async fn service_plan(
    args: &UpArgs,
    service: &'static str,
    replica: usize,
    registry_url: &str,
) -> anyhow::Result<Plan> {
    let address = free_port()?;
    let database_url = database_of(args, service).await?;
    let mut env = common_env(args, address);
    env.push(("DURE_DATABASE_URL".to_owned(), database_url));
    env.push(("DURE_REGISTRY_URL".to_owned(), registry_url.to_owned()));
    env.push(("DURE_BUS".to_owned(), args.bus.clone()));
    if service == <dure_identity::Identity as Service>::NAME
        && let Some(password) =
            secrets::admin_password(&args.data_dir, args.database_url.is_none())?
    {
        env.push(("DURE_ADMIN_PASSWORD".to_owned(), password));
    }
    let label = if replica == 1 {
        service.to_owned()
    } else {
        format!("{service}-{replica}")
    };
    Ok(Plan {
        service,
        label,
        address,
        env,
    })
}

/// The database of `service`: its own on the Postgres server, created if
/// missing, or its own SQLite file in the data directory.
async fn database_of(args: &UpArgs, service: &str) -> anyhow::Result<String> {
    Ok(match &args.database_url {
        Some(server) => {
            let url = format!("{}/dure_{service}", server.trim_end_matches('/'));
            dure_chassis::db::create_postgres_database(&url)
                .await
                .with_context(|| format!("cannot prepare the database of {service}"))?;
            url
        }
        None => format!(
            "sqlite://{}",
            args.data_dir.join(format!("{service}.db")).display()
        ),
    })
}

/// A port nobody listens on right now and that this `dure up` has not handed
/// out before (the registry's, the gateway's and the console's included). The child binds it a moment later; until then the kernel may
/// offer the same released port again, to the next service.
fn free_port() -> anyhow::Result<SocketAddr> {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        let address = listener.local_addr()?;
        if hand_out(address.port()) {
            return Ok(address);
        }
    }
    anyhow::bail!("cannot find a free port: the kernel keeps offering ports already handed out")
}

async fn wait_ready(client: &reqwest::Client, url: &str) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn print_table(plans: &[Plan], gateway: SocketAddr, console: Option<&str>, took: Duration) {
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    for plan in plans {
        let address = format!("http://{}", plan.address);
        match rows
            .iter_mut()
            .find(|(service, _)| *service == plan.service)
        {
            Some((_, addresses)) => addresses.push(address),
            None => rows.push((plan.service, vec![address])),
        }
    }
    println!();
    println!(
        "{:<12} {:<10} {:<28} STATE",
        "SERVICE", "INSTANCES", "ADDRESS"
    );
    for (service, addresses) in &rows {
        for (i, address) in addresses.iter().enumerate() {
            let (name, count) = if i == 0 {
                (*service, addresses.len().to_string())
            } else {
                ("", String::new())
            };
            println!("{name:<12} {count:<10} {address:<28} ready");
        }
    }
    if let Some(console) = console {
        println!("{:<12} {:<10} {console:<28} ready", "console", "1");
    }
    println!();
    println!(
        "dure is up in {:.1}s: http://{gateway}  (ctrl-c stops it)",
        took.as_secs_f64()
    );
}

fn report_death(child: Option<&Child>, exit: &Exit) {
    eprintln!();
    eprintln!(
        "!!! {} (pid {}) exited unexpectedly: {}",
        exit.label, exit.pid, exit.status
    );
    if let Some(child) = child {
        eprintln!("!!! its last log lines:");
        for line in child.last_lines() {
            eprintln!("!!!   {line}");
        }
    }
    eprintln!();
}

async fn stop_all(children: &mut [Child], grace: Duration) {
    let stops = children.iter_mut().map(|child| child.stop(grace));
    futures_util::future::join_all(stops).await;
}
