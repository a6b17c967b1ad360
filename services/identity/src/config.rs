//! identity's settings: the shared service settings plus token lifetimes,
//! login throttling and the first admin's password.

use crate::throttle::LoginThrottle;
use dure_chassis::config::{ConfigError, ConfigFile, DatabaseUrl, Secret, parse_duration};
use dure_chassis::discovery::{DiscoveryArgs, DiscoverySettings};
use dure_chassis::events::{Bus, BusArgs};
use dure_chassis::service::{ServiceArgs, ServiceSettings, StorageArgs};
use std::net::SocketAddr;
use std::time::Duration;

/// The port identity listens on when nothing else is said.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7001);

/// `dure run identity` flags; each also reads the `DURE_*` variable shown.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    /// How long an access token is valid [default: 15m]
    #[arg(long, env = "DURE_ACCESS_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub access_token_ttl: Option<Duration>,
    /// How long an unused refresh token is valid [default: 30d]
    #[arg(long, env = "DURE_REFRESH_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub refresh_token_ttl: Option<Duration>,
    /// Password for user `admin`, created at start when no admin exists (prefer the env var)
    #[arg(
        long,
        env = "DURE_ADMIN_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<Secret>,
    /// Failed logins per account within the window before 429 [default: 5]
    #[arg(long, env = "DURE_LOGIN_FAILURES_PER_ACCOUNT", value_name = "N")]
    pub login_failures_per_account: Option<u32>,
    /// Failed logins per client address within the window before 429 [default: 100]
    #[arg(long, env = "DURE_LOGIN_FAILURES_PER_ADDRESS", value_name = "N")]
    pub login_failures_per_address: Option<u32>,
    /// The sliding window login failures are counted in [default: 5m]
    #[arg(long, env = "DURE_LOGIN_FAILURE_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub login_failure_window: Option<Duration>,
}

/// identity's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceSettings,
    pub database_url: DatabaseUrl,
    pub discovery: DiscoverySettings,
    /// How events travel: the HTTP feed, or NATS JetStream.
    pub bus: Bus,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub admin_password: Option<Secret>,
    pub throttle: LoginThrottle,
}

impl Args {
    pub fn resolve(&self, file: &ConfigFile) -> Result<Config, ConfigError> {
        let defaults = LoginThrottle::default();
        let config = Config {
            service: self.service.resolve(file, DEFAULT_LISTEN)?,
            database_url: self.storage.resolve(file, crate::NAME)?,
            discovery: self.discovery.resolve(file)?,
            bus: self.bus.resolve(file)?,
            access_token_ttl: file.layer(
                "access_token_ttl",
                self.access_token_ttl,
                Duration::from_secs(15 * 60),
            )?,
            refresh_token_ttl: file.layer(
                "refresh_token_ttl",
                self.refresh_token_ttl,
                Duration::from_secs(30 * 24 * 3600),
            )?,
            admin_password: file.layer_opt("admin_password", self.admin_password.clone())?,
            throttle: LoginThrottle {
                per_account: file.layer(
                    "login_failures_per_account",
                    self.login_failures_per_account,
                    defaults.per_account,
                )?,
                per_address: file.layer(
                    "login_failures_per_address",
                    self.login_failures_per_address,
                    defaults.per_address,
                )?,
                window: file.layer(
                    "login_failure_window",
                    self.login_failure_window,
                    defaults.window,
                )?,
            },
        };
        config.validate()?;
        Ok(config)
    }
}

fn invalid(key: &str, expected: &str, value: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        origin: "configuration".into(),
        expected: expected.into(),
        value,
    }
}

impl Config {
    /// Defaults on the given database: for tests and embedding.
    pub fn for_database(database_url: DatabaseUrl) -> Self {
        Self {
            service: ServiceSettings::local(),
            database_url,
            discovery: DiscoverySettings::default(),
            bus: Bus::Feed,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_password: None,
            throttle: LoginThrottle::default(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ttl = self.access_token_ttl;
        if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "access_token_ttl",
                "a duration between 10s and 24h",
                format!("{ttl:?}"),
            ));
        }
        if self.refresh_token_ttl < ttl {
            return Err(invalid(
                "refresh_token_ttl",
                "a duration at least as long as access_token_ttl",
                format!("{:?}", self.refresh_token_ttl),
            ));
        }
        if let Some(password) = &self.admin_password
            && password.expose().chars().count() < 10
        {
            return Err(invalid(
                "admin_password",
                "at least 10 characters",
                "(hidden)".into(),
            ));
        }
        if self.throttle.per_account == 0 || self.throttle.per_address == 0 {
            return Err(invalid(
                "login_failures_per_account/address",
                "a number above 0",
                "0".into(),
            ));
        }
        if self.throttle.window.is_zero() {
            return Err(invalid(
                "login_failure_window",
                "a duration above 0",
                "0s".into(),
            ));
        }
        Ok(())
    }
}
