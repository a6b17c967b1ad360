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
//! - [`load`]: `dure load`, an open-loop load generator for a running system.
//! - [`proc_stats`]: memory and CPU of a process, from `/proc`.

#![forbid(unsafe_code)]

mod cli;
mod load;
mod proc_stats;
mod run;
mod status;
mod up;

use clap::Parser;
use dure_chassis::process::{self, Runtime};

/// glibc's allocator spent a sixth of the gateway's CPU under load in
/// malloc, free and consolidation; see docs/decisions/0003.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = cli::Cli::parse();
    // The gateway runs one single-threaded runtime per core itself.
    let runtime = match &cli.command {
        cli::Command::Run(cli::Service::Gateway(_)) => Runtime::CurrentThread,
        _ => Runtime::MultiThread,
    };
    process::main("dure", runtime, async {
        match cli.command {
            cli::Command::Run(service) => run::run(service).await,
            cli::Command::Up(args) => up::up(args).await,
            cli::Command::Status(args) => status::status(args).await,
            cli::Command::Load(args) => load::load(args).await,
        }
    })
}
