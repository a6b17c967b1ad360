//! The `main` of a dure process: `dure run <service>` and the one-service
//! binaries (`dure-identity`, …) that container images hold.
//!
//! [`service_main`] is the whole `main` of a one-service binary;
//! [`run_alone`] runs one service on its port (also `dure run`);
//! [`main`] builds the runtime and reports an error as one line;
//! [`start`] turns logging and trace export on and binds the listener;
//! [`finish`] flushes the traces once the service has stopped.

#[cfg(feature = "storage")]
use crate::service::{self, Args, Listen, Service};
use crate::telemetry::{self, LogFormat, Tracing};
use anyhow::Context as _;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::net::TcpListener;

/// How a process schedules its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Tokio's work-stealing runtime over every core.
    MultiThread,
    /// One thread: for the gateway, which runs a runtime per core itself.
    CurrentThread,
}

#[cfg(feature = "storage")]
/// The `main` of the binary that runs service `S` alone (`dure-posting`, …):
/// the same flags and `DURE_*` variables as `dure run <service>`.
pub fn service_main<S: Service>() -> ExitCode {
    lean_allocator();
    // Lives as long as the process: clap takes only static names.
    let program: &'static str = format!("dure-{}", S::NAME).leak();
    let command = <Args<S::Args> as clap::Args>::augment_args(
        clap::Command::new(program)
            .version(env!("CARGO_PKG_VERSION"))
            .about(S::ABOUT),
    );
    let args = command
        .try_get_matches()
        .and_then(|matches| <Args<S::Args> as clap::FromArgMatches>::from_arg_matches(&matches));
    match args {
        Ok(args) => main(program, Runtime::MultiThread, run_alone::<S>(args)),
        Err(err) => err.exit(),
    }
}

/// Service `S` alone in this process on its own port, until SIGTERM or
/// ctrl-c.
#[cfg(feature = "storage")]
pub async fn run_alone<S: Service>(args: Args<S::Args>) -> anyhow::Result<ExitCode> {
    let config = args.resolve::<S>(&crate::config::ConfigFile::load(S::NAME)?)?;
    let (listener, tracing) =
        start(S::NAME, config.service.log_format, config.service.listen).await?;
    service::run::<S>(
        config,
        Listen::tcp(listener),
        crate::http::shutdown_signal(),
    )
    .await?;
    finish(tracing).await
}

/// Runs `work` on a fresh runtime; an error ends the process with its
/// message (`<program>: <cause>`) and a failure status.
pub fn main<F>(program: &str, runtime: Runtime, work: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let mut builder = match runtime {
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{program}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{program}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logging and trace export on, then the listener: a taken port is a clear
/// message.
pub async fn start(
    service: &str,
    log_format: LogFormat,
    address: SocketAddr,
) -> anyhow::Result<(TcpListener, Option<Tracing>)> {
    let tracing = telemetry::init(log_format, &telemetry::resource(service))?;
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address} (is another process using it? choose another with --listen)"
        )
    })?;
    Ok((listener, tracing))
}

/// Flushes the spans still queued; call after the service stopped.
pub async fn finish(tracing: Option<Tracing>) -> anyhow::Result<ExitCode> {
    if let Some(tracing) = tracing {
        // Flushing blocks until the export thread is done: off the async workers.
        tokio::task::spawn_blocking(move || tracing.shutdown()).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// mimalloc commits its arena eagerly unless told otherwise, which costs
/// every process about 10 MB at rest (identity: 27 MB instead of 16 MB).
/// Its options are read from the environment when the process starts, so a
/// process without the setting starts itself again, same pid, with it.
/// Call first thing in `main`, before any thread exists.
#[cfg(unix)]
pub fn lean_allocator() {
    use std::os::unix::process::CommandExt;
    const SETTING: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    if std::env::var_os(SETTING).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(SETTING, "0")
        .exec();
    // exec returns only if it failed: carry on with the defaults.
    eprintln!("could not restart with {SETTING}=0 ({err}); continuing");
}

#[cfg(not(unix))]
pub fn lean_allocator() {}
