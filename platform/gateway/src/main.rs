//! `dure-gateway`: the API gateway alone, as a container image runs it.
//! It takes the same flags and `DURE_*` variables as `dure run gateway`.

use clap::Parser;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, Runtime};
use std::process::ExitCode;

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dure's API gateway: the one public entry point
#[derive(Parser)]
#[command(name = "dure-gateway", version)]
struct Cli {
    #[command(flatten)]
    args: dure_gateway::Args,
}

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = Cli::parse();
    // The gateway runs one single-threaded runtime per core itself.

    process::main("dure-gateway", Runtime::CurrentThread, async {
        let config = cli.args.resolve(&ConfigFile::load(dure_gateway::NAME)?)?;
        let (listener, tracing) = process::start(
            dure_gateway::NAME,
            config.service.log_format,
            config.service.listen,
        )
        .await?;
        dure_gateway::run(config, listener, shutdown_signal()).await?;
        process::finish(tracing).await
    })
}
