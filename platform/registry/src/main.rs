//! `dure-registry`: the service registry alone, as a container image runs it.
//! It takes the same flags and `DURE_*` variables as `dure run registry`.

use clap::Parser;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, Runtime};
use std::process::ExitCode;

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dure's service registry: instances register, heartbeat and are watched
#[derive(Parser)]
#[command(name = "dure-registry", version)]
struct Cli {
    #[command(flatten)]
    args: dure_registry::Args,
}

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = Cli::parse();
    process::main("dure-registry", Runtime::MultiThread, async {
        let config = cli.args.resolve(&ConfigFile::load(dure_registry::NAME)?)?;
        let (listener, tracing) = process::start(
            dure_registry::NAME,
            config.service.log_format,
            config.service.listen,
        )
        .await?;
        dure_registry::run(
            config,
            dure_chassis::serving::Listen::tcp(listener),
            shutdown_signal(),
        )
        .await?;
        process::finish(tracing).await
    })
}
