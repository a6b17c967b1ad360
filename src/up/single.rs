//! `dure up --single-process`: the whole system inside this process, a
//! modular monolith made of the same service libraries.
//!
//! Every service still has its own database (file or Postgres database)
//! and outbox, registers with the registry and finds the others through it,
//! and is called over the same HTTP layers — only as `local://<name>`, a
//! router called as a tower service, never through a socket (see
//! `dure_chassis::local`). The registry also answers on its port (for
//! `dure status` and its page) and the gateway on its own, with the same API
//! as in the multi-process topology.

use super::{START_TIMEOUT, database_of, ensure_free, secrets};
use crate::cli::UpArgs;
use anyhow::Context;
use dure_chassis::client::Client;
use dure_chassis::config::ConfigFile;
use dure_chassis::local;
use dure_chassis::service::{self, Listen, Service};
use dure_chassis::telemetry::{self, LogFormat};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The registry's name inside this process.
const REGISTRY: &str = "registry";

/// One part of the system running on this process's runtime.
struct Part {
    name: &'static str,
    address: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Part {
    fn spawn<F>(name: &'static str, address: String, run: impl FnOnce(Stopped) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self {
            name,
            address,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("dure: {} stopped with an error: {err:#}", self.name),
            Err(err) => eprintln!("dure: {} failed: {err}", self.name),
        }
    }
}

type Stopped = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Any clap `Args` parsed from a command line of flags.
#[derive(clap::Parser)]
struct Flags<A: clap::Args> {
    #[command(flatten)]
    args: A,
}

fn parse<A: clap::Args>(name: &str, flags: &[String]) -> anyhow::Result<A> {
    let argv = std::iter::once(name.to_owned()).chain(flags.iter().cloned());
    let flags = <Flags<A> as clap::Parser>::try_parse_from(argv)
        .with_context(|| format!("configuring {name}"))?;
    Ok(flags.args)
}

pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    ensure_free(args.registry_listen, "the registry", "--registry-listen")?;
    ensure_free(args.gateway_listen, "the gateway", "--gateway-listen")?;
    let format = if args.log_format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let tracing = telemetry::init(format, &telemetry::resource("dure"))?;
    let started = Instant::now();
    let pid = std::process::id();
    let registry_url = local::address(REGISTRY);

    let mut parts = Vec::new();
    let registry_args = vec!["--listen".to_owned(), args.registry_listen.to_string()];
    let config = parse::<dure_registry::Args>(dure_registry::NAME, &registry_args)?
        .resolve(&ConfigFile::load(dure_registry::NAME)?)?;
    let listener = tokio::net::TcpListener::bind(args.registry_listen).await?;
    println!("starting registry in this process (pid {pid}) …");
    parts.push(Part::spawn(
        dure_registry::NAME,
        format!("http://{}", args.registry_listen),
        |stop| dure_registry::run(config, Listen::in_process(REGISTRY).and_tcp(listener), stop),
    ));
    wait_ready(&[format!("{registry_url}/readyz")], &mut parts).await?;

    let admin = secrets::admin_password(&args.data_dir, args.database_url.is_none())?;
    let identity_flags: Vec<String> = admin
        .into_iter()
        .flat_map(|password| ["--admin-password".to_owned(), password])
        .collect();
    parts.push(start::<dure_identity::Identity>(&args, &registry_url, &identity_flags).await?);
    parts.push(start::<dure_posting::Board>(&args, &registry_url, &[]).await?);
    parts.push(start::<dure_notice::Notices>(&args, &registry_url, &[]).await?);
    parts.push(start::<dure_notification::Notifications>(&args, &registry_url, &[]).await?);
    parts.push(start::<dure_reporting::Reports>(&args, &registry_url, &[]).await?);
    parts.push(start::<dure_web::Web>(&args, &registry_url, &[]).await?);
    let services: Vec<String> = parts[1..]
        .iter()
        .map(|part| format!("{}/readyz", part.address))
        .collect();
    wait_ready(&services, &mut parts).await?;

    let gateway_flags = vec![
        "--listen".to_owned(),
        args.gateway_listen.to_string(),
        "--registry-url".to_owned(),
        registry_url.clone(),
    ];
    let config = parse::<dure_gateway::Args>(dure_gateway::NAME, &gateway_flags)?
        .resolve(&ConfigFile::load(dure_gateway::NAME)?)?;
    let listener = tokio::net::TcpListener::bind(args.gateway_listen).await?;
    println!("starting gateway in this process (pid {pid}) …");
    parts.push(Part::spawn(
        dure_gateway::NAME,
        format!("http://{}", args.gateway_listen),
        |stop| dure_gateway::run(config, listener, stop),
    ));
    wait_ready(
        &[format!("http://{}/readyz", args.gateway_listen)],
        &mut parts,
    )
    .await?;

    println!();
    println!(
        "{:<12} {:<10} {:<28} STATE",
        "SERVICE", "INSTANCES", "ADDRESS"
    );
    for part in &parts {
        println!("{:<12} {:<10} {:<28} ready", part.name, 1, part.address);
    }
    println!();
    println!(
        "dure is up in {:.1}s, in one process (pid {pid}): http://{}  (ctrl-c stops it)",
        started.elapsed().as_secs_f64(),
        args.gateway_listen
    );

    // Until asked to stop, or until a part fails: then the whole process
    // stops, as there is no supervisor to restart one part alone.
    let shutdown = dure_chassis::http::shutdown_signal();
    tokio::pin!(shutdown);
    let mut failed = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(at) = parts.iter().position(|part| part.task.is_finished()) {
                    failed = Some(parts.remove(at));
                    break;
                }
            }
        }
    }
    let code = match failed {
        Some(part) => {
            eprintln!(
                "dure: {} stopped unexpectedly; stopping the rest",
                part.name
            );
            part.stop().await;
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    };
    println!("stopping …");
    // The gateway first, the registry last, as in the multi-process topology.
    while let Some(part) = parts.pop() {
        tokio::time::timeout(args.shutdown_grace, part.stop())
            .await
            .unwrap_or_else(|_| eprintln!("dure: a part did not stop in time"));
    }
    if let Some(tracing) = tracing {
        tokio::task::spawn_blocking(move || tracing.shutdown()).await?;
    }
    println!("stopped");
    Ok(code)
}

/// Starts service `S` in this process with the flags `dure up` would give
/// its process (the rest from its `DURE_*` variables and `dure.toml`).
async fn start<S: Service>(
    args: &UpArgs,
    registry_url: &str,
    extra: &[String],
) -> anyhow::Result<Part> {
    let mut flags = vec![
        "--database-url".to_owned(),
        database_of(args, S::NAME).await?,
        "--data-dir".to_owned(),
        args.data_dir.display().to_string(),
        "--bus".to_owned(),
        args.bus.clone(),
        "--registry-url".to_owned(),
        registry_url.to_owned(),
    ];
    flags.extend_from_slice(extra);
    let config = parse::<service::Args<S::Args>>(S::NAME, &flags)?
        .resolve::<S>(&ConfigFile::load(S::NAME)?)?;
    println!(
        "starting {} in this process (pid {}) …",
        S::NAME,
        std::process::id()
    );
    Ok(Part::spawn(S::NAME, local::address(S::NAME), |stop| {
        service::run::<S>(config, Listen::in_process(S::NAME), stop)
    }))
}

/// Waits until every URL (in process or not) answers 2xx; a part that ends
/// meanwhile ends the start with its error.
async fn wait_ready(urls: &[String], parts: &mut Vec<Part>) -> anyhow::Result<()> {
    let client = Client::new(Duration::from_secs(2));
    let deadline = Instant::now() + START_TIMEOUT;
    for url in urls {
        loop {
            let ready = client
                .get(url.as_str())
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                break;
            }
            if let Some(at) = parts.iter().position(|part| part.task.is_finished()) {
                let part = parts.remove(at);
                let name = part.name;
                return Err(match part.task.await {
                    Ok(Err(err)) => err.context(format!("{name} could not start")),
                    Ok(Ok(())) => anyhow::anyhow!("{name} stopped while starting"),
                    Err(err) => anyhow::anyhow!("{name} failed while starting: {err}"),
                });
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{url} did not become ready within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
