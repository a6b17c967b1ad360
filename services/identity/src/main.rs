//! `dure-identity`: the identity service alone, as a container image runs it.
//! It takes the same flags and `DURE_*` variables as `dure run identity`.

use clap::Parser;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, Runtime};
use std::process::ExitCode;

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dure's identity service: accounts, credentials, tokens and signing keys
#[derive(Parser)]
#[command(name = "dure-identity", version)]
struct Cli {
    #[command(flatten)]
    args: dure_identity::Args,
}

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = Cli::parse();
    process::main("dure-identity", Runtime::MultiThread, async {
        let config = cli.args.resolve(&ConfigFile::load(dure_identity::NAME)?)?;
        let (listener, tracing) = process::start(
            dure_identity::NAME,
            config.service.log_format,
            config.service.listen,
        )
        .await?;
        dure_identity::run(config, listener, shutdown_signal()).await?;
        process::finish(tracing).await
    })
}
