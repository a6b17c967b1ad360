//! `dure run <service>`: one service in this process, stopped by SIGTERM or
//! ctrl-c.

use crate::cli::Service;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, start};
use std::process::ExitCode;

pub async fn run(service: Service) -> anyhow::Result<ExitCode> {
    let tracing = match service {
        Service::Registry(args) => {
            let config = args.resolve(&ConfigFile::load(dure_registry::NAME)?)?;
            let (listener, tracing) = start(
                dure_registry::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_registry::run(config, listener, shutdown_signal()).await?;
            tracing
        }
        Service::Gateway(args) => {
            let config = args.resolve(&ConfigFile::load(dure_gateway::NAME)?)?;
            let (listener, tracing) = start(
                dure_gateway::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_gateway::run(config, listener, shutdown_signal()).await?;
            tracing
        }
        Service::Identity(args) => {
            let config = args.resolve(&ConfigFile::load(dure_identity::NAME)?)?;
            let (listener, tracing) = start(
                dure_identity::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_identity::run(config, listener, shutdown_signal()).await?;
            tracing
        }
        Service::Posting(args) => {
            let config = args.resolve(&ConfigFile::load(dure_posting::NAME)?)?;
            let (listener, tracing) = start(
                dure_posting::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_posting::run(config, listener, shutdown_signal()).await?;
            tracing
        }
        Service::Notice(args) => {
            let config = args.resolve(&ConfigFile::load(dure_notice::NAME)?)?;
            let (listener, tracing) = start(
                dure_notice::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_notice::run(config, listener, shutdown_signal()).await?;
            tracing
        }
        Service::Notification(args) => {
            let config = args.resolve(&ConfigFile::load(dure_notification::NAME)?)?;
            let (listener, tracing) = start(
                dure_notification::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_notification::run(config, listener, shutdown_signal()).await?;
            tracing
        }
    };
    process::finish(tracing).await
}
