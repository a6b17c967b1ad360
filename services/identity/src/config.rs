//! identity's own settings, beyond every service's: token lifetimes,
//! login throttling, the first admin's password and the erasure saga's
//! timing.

use crate::erasure::Policy;
use crate::throttle::LoginThrottle;
use dure_chassis::config::{ConfigError, ConfigFile, Secret, parse_duration};
use std::time::Duration;

/// identity's own flags; each also reads the `DURE_*` variable shown.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Args {
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
    /// Accounts created per client address within the window before 429 [default: 20]
    #[arg(long, env = "DURE_SIGNUPS_PER_ADDRESS", value_name = "N")]
    pub signups_per_address: Option<u32>,
    /// The sliding window login failures and sign-ups are counted in [default: 5m]
    #[arg(long, env = "DURE_LOGIN_FAILURE_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub login_failure_window: Option<Duration>,
    /// How long an account's erasure may take before its saga is failed (an admin may retry it) [default: 24h]
    #[arg(long, env = "DURE_ERASURE_DEADLINE", value_name = "DURATION", value_parser = parse_duration)]
    pub erasure_deadline: Option<Duration>,
    /// The pause before an unconfirmed erasure command is sent again; it doubles up to 5m [default: 10s]
    #[arg(long, env = "DURE_ERASURE_RETRY", value_name = "DURATION", value_parser = parse_duration)]
    pub erasure_retry: Option<Duration>,
}

/// identity's own settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub admin_password: Option<Secret>,
    pub throttle: LoginThrottle,
    pub erasure: Policy,
}

impl Args {
    pub fn resolve(&self, file: &ConfigFile) -> Result<Settings, ConfigError> {
        let defaults = LoginThrottle::default();
        let config = Settings {
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
                signups_per_address: file.layer(
                    "signups_per_address",
                    self.signups_per_address,
                    defaults.signups_per_address,
                )?,
                window: file.layer(
                    "login_failure_window",
                    self.login_failure_window,
                    defaults.window,
                )?,
            },
            erasure: Policy {
                backoff: file.layer(
                    "erasure_retry",
                    self.erasure_retry,
                    Policy::default().backoff,
                )?,
                deadline: file.layer(
                    "erasure_deadline",
                    self.erasure_deadline,
                    Policy::default().deadline,
                )?,
                ..Policy::default()
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_password: None,
            throttle: LoginThrottle::default(),
            erasure: Policy::default(),
        }
    }
}

impl Settings {
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
        if self.throttle.per_account == 0
            || self.throttle.per_address == 0
            || self.throttle.signups_per_address == 0
        {
            return Err(invalid(
                "login_failures_per_account/address, signups_per_address",
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
