//! posting's settings: those of every domain service (listen address,
//! database, discovery, event bus, where the token keys are).

use dure_chassis::config::{ConfigError, ConfigFile};
use dure_chassis::service::DomainArgs;
use std::net::SocketAddr;

pub use dure_chassis::service::DomainConfig as Config;

pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7002);

/// `dure run posting` flags; each also reads the `DURE_*` variable shown.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: DomainArgs,
}

impl Args {
    pub fn resolve(&self, file: &ConfigFile) -> Result<Config, ConfigError> {
        self.common.resolve(file, crate::NAME, DEFAULT_LISTEN)
    }
}
