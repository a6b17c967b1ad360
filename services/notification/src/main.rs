//! `dure-notification`: the notification service alone, as a container image runs it.
//! It takes the same flags and `DURE_*` variables as `dure run notification`.

use clap::Parser;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, Runtime};
use std::process::ExitCode;

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dure's notification service: a user's notifications, listed and streamed live
#[derive(Parser)]
#[command(name = "dure-notification", version)]
struct Cli {
    #[command(flatten)]
    args: dure_notification::Args,
}

fn main() -> ExitCode {
    process::lean_allocator();
    let cli = Cli::parse();
    process::main("dure-notification", Runtime::MultiThread, async {
        let config = cli
            .args
            .resolve(&ConfigFile::load(dure_notification::NAME)?)?;
        let (listener, tracing) = process::start(
            dure_notification::NAME,
            config.service.log_format,
            config.service.listen,
        )
        .await?;
        dure_notification::run(config, listener, shutdown_signal()).await?;
        process::finish(tracing).await
    })
}
