//! `dure run <service>`: one service in this process, stopped by SIGTERM or
//! ctrl-c.

use crate::cli::Service;
use dure_chassis::config::ConfigFile;
use dure_chassis::http::shutdown_signal;
use dure_chassis::process::{self, run_alone, start};
use dure_chassis::service::Listen;
use std::process::ExitCode;

pub async fn run(service: Service) -> anyhow::Result<ExitCode> {
    match service {
        Service::Registry(args) => {
            let config = args.resolve(&ConfigFile::load(dure_registry::NAME)?)?;
            let (listener, tracing) = start(
                dure_registry::NAME,
                config.service.log_format,
                config.service.listen,
            )
            .await?;
            dure_registry::run(config, Listen::tcp(listener), shutdown_signal()).await?;
            process::finish(tracing).await
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
            process::finish(tracing).await
        }
        Service::Identity(args) => run_alone::<dure_identity::Identity>(args).await,
        Service::Posting(args) => run_alone::<dure_posting::Board>(args).await,
        Service::Notice(args) => run_alone::<dure_notice::Notices>(args).await,
        Service::Notification(args) => run_alone::<dure_notification::Notifications>(args).await,
        Service::Reporting(args) => run_alone::<dure_reporting::Reports>(args).await,
        Service::Web(args) => run_alone::<dure_web::Web>(args).await,
    }
}
