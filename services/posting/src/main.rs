//! `dure-posting`: the posting service alone, as a container image runs it.
//! It takes the same flags and `DURE_*` variables as `dure run posting`.

use clap::Parser;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, Runtime};
use std::process::ExitCode;

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dure's posting service: postings and their comments
#[derive(Parser)]
#[command(name = "dure-posting", version)]
struct Cli {
    #[command(flatten)]
    args: dure_posting::Args,
}

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = Cli::parse();
    process::main("dure-posting", Runtime::MultiThread, async {
        let config = cli.args.resolve(&ConfigFile::load(dure_posting::NAME)?)?;
        let (listener, tracing) = process::start(
            dure_posting::NAME,
            config.service.log_format,
            config.service.listen,
        )
        .await?;
        dure_posting::run(config, listener, shutdown_signal()).await?;
        process::finish(tracing).await
    })
}
