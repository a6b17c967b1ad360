//! `dure run <service>`: one service in this process, stopped by SIGTERM or
//! ctrl-c.

use crate::cli::Service;
use anyhow::Context;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::telemetry::{self, LogFormat};
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::net::TcpListener;

pub async fn run(service: Service) -> anyhow::Result<ExitCode> {
    match service {
        Service::Registry(args) => {
            let config = args.resolve(&ConfigFile::load(dure_registry::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_registry::run(config, listener, shutdown_signal()).await?;
        }
        Service::Gateway(args) => {
            let config = args.resolve(&ConfigFile::load(dure_gateway::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_gateway::run(config, listener, shutdown_signal()).await?;
        }
        Service::Identity(args) => {
            let config = args.resolve(&ConfigFile::load(dure_identity::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_identity::run(config, listener, shutdown_signal()).await?;
        }
        Service::Posting(args) => {
            let config = args.resolve(&ConfigFile::load(dure_posting::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_posting::run(config, listener, shutdown_signal()).await?;
        }
        Service::Notice(args) => {
            let config = args.resolve(&ConfigFile::load(dure_notice::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_notice::run(config, listener, shutdown_signal()).await?;
        }
        Service::Notification(args) => {
            let config = args.resolve(&ConfigFile::load(dure_notification::NAME)?)?;
            let listener = start(config.service.log_format, config.service.listen).await?;
            dure_notification::run(config, listener, shutdown_signal()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Logging on, then the listener: a taken port is a clear message.
async fn start(log_format: LogFormat, address: SocketAddr) -> anyhow::Result<TcpListener> {
    telemetry::init_logging(log_format);
    TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address} (is another process using it? choose another with --listen)"
        )
    })
}
