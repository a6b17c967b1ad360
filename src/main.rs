//! `dure`: starts the dure system, or one of its services.
//!
//! This binary is wiring only: each service is a library, and the commands
//! here choose which ones run and where.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`run`]: `dure run <service>`, one service in this process.
//! - [`up`]: `dure up`, the whole system as child processes of this one.
//! - [`status`]: `dure status`, the registry's view.

#![forbid(unsafe_code)]

mod cli;
mod run;
mod status;
mod up;

use clap::Parser;

/// glibc's allocator spent a sixth of the gateway's CPU under load in
/// malloc, free and consolidation; see docs/decisions/0003.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    lean_allocator();
    let cli = cli::Cli::parse();
    // The gateway runs one single-threaded runtime per core itself.
    let mut builder = match &cli.command {
        cli::Command::Run(cli::Service::Gateway(_)) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dure: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Run(service) => run::run(service).await,
            cli::Command::Up(args) => up::up(args).await,
            cli::Command::Status(args) => status::status(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dure: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc commits its arena eagerly unless told otherwise, which costs
/// every process about 10 MB at rest (identity: 27 MB instead of 16 MB).
/// Its options are read from the environment when the process starts, so a
/// process without the setting starts itself again, same pid, with it.
#[cfg(unix)]
fn lean_allocator() {
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
    eprintln!("dure: could not restart with {SETTING}=0 ({err}); continuing");
}

#[cfg(not(unix))]
fn lean_allocator() {}
