//! Layered, typed configuration: defaults < `dure.toml` < `DURE_*` env < flags.
//!
//! Flags and environment variables are declared with clap (`#[arg(long,
//! env = "DURE_…")]`) as `Option`s without defaults, so a `Some` means the
//! operator set it in one of the two top layers (clap already puts flags above
//! env). [`ConfigFile`] supplies the layer below; the service's own `Default`
//! is the bottom. Values in every layer go through the same parsers, so a bad
//! value fails the same way wherever it was written: at start, naming the key
//! and the form it expects.
//!
//! `dure.toml` holds top-level keys that apply to every service and one table
//! per service whose keys apply to that service only:
//!
//! ```toml
//! log_format = "json"
//!
//! [identity]
//! listen = "127.0.0.1:7001"
//! access_token_ttl = "15m"
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Why the configuration could not be used; the process stops with this.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid value for `{key}` (in {origin}): expected {expected}, got {value:?}")]
    Invalid {
        key: String,
        origin: String,
        expected: String,
        value: String,
    },
}

/// The `dure.toml` layer as seen by one service: its own table merged over
/// the top-level keys.
#[derive(Debug, Default, Clone)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    values: toml::Table,
}

impl ConfigFile {
    /// Reads the file named by `DURE_CONFIG`, else `./dure.toml` when present.
    /// No file at all is fine: the layer is then empty.
    pub fn load(service: &str) -> Result<Self, ConfigError> {
        match std::env::var_os("DURE_CONFIG") {
            Some(path) => Self::from_path(Path::new(&path), service),
            None if Path::new("dure.toml").is_file() => {
                Self::from_path(Path::new("dure.toml"), service)
            }
            None => Ok(Self::default()),
        }
    }

    pub fn from_path(path: &Path, service: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, service)
    }

    pub fn parse(text: &str, path: &Path, service: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut values = toml::Table::new();
        for (key, value) in &table {
            if !value.is_table() {
                values.insert(key.clone(), value.clone());
            }
        }
        if let Some(toml::Value::Table(own)) = table.get(service) {
            for (key, value) in own {
                values.insert(key.clone(), value.clone());
            }
        }
        Ok(Self {
            path: Some(path.to_owned()),
            values,
        })
    }

    /// The value of `key`: from flags/env if given there, else from the file,
    /// else `default`.
    pub fn layer<T: Setting>(
        &self,
        key: &str,
        from_flags_or_env: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(match from_flags_or_env {
            Some(value) => value,
            None => self.get(key)?.unwrap_or(default),
        })
    }

    /// Like [`layer`](Self::layer) for settings that have no default.
    pub fn layer_opt<T: Setting>(
        &self,
        key: &str,
        from_flags_or_env: Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match from_flags_or_env {
            Some(value) => Ok(Some(value)),
            None => self.get(key),
        }
    }

    fn get<T: Setting>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| format!("{item:?}"), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(","),
            other => format!("{other:?}"),
        };
        T::parse_setting(&text)
            .map(Some)
            .map_err(|expected| ConfigError::Invalid {
                key: key.to_owned(),
                origin: self
                    .path
                    .as_deref()
                    .map_or_else(|| "dure.toml".into(), |p| p.display().to_string()),
                expected,
                value: text,
            })
    }
}

/// A type a setting can have. `parse_setting` returns, on error, the form it
/// expected ("a duration such as 15m"), so messages can name it.
pub trait Setting: Sized {
    fn parse_setting(text: &str) -> Result<Self, String>;
}

macro_rules! setting_from_str {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl Setting for $ty {
            fn parse_setting(text: &str) -> Result<Self, String> {
                <$ty>::from_str(text.trim()).map_err(|_| $expected.to_owned())
            }
        }
    )*};
}

setting_from_str! {
    SocketAddr => "a socket address such as 127.0.0.1:7001",
    u32 => "a whole number",
    u64 => "a whole number",
    usize => "a whole number",
    bool => "true or false",
}

impl Setting for String {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

// Here rather than beside the type: dure-telemetry knows nothing of settings.
impl Setting for crate::telemetry::LogFormat {
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

impl Setting for Duration {
    fn parse_setting(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
}

impl<T: Setting> Setting for Vec<T> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_start_matches('[').trim_end_matches(']');
        text.split(',')
            .map(|item| item.trim().trim_matches('"'))
            .filter(|item| !item.is_empty())
            .map(T::parse_setting)
            .collect()
    }
}

/// Parses `500ms`, `30s`, `15m`, `2h`, `1d` (a bare number is seconds).
/// Usable as a clap `value_parser`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration such as 500ms, 30s, 15m, 2h or 1h 30m";
    let text = text.trim();
    // A bare number has always meant seconds here; humantime wants a unit.
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| EXPECTED.to_owned());
    }
    humantime::parse_duration(text).map_err(|_| EXPECTED.to_owned())
}

/// Where a service keeps its data: a `sqlite:` file or a `postgres:` server.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// A SQLite file at `path`.
    pub fn sqlite_file(path: &Path) -> Self {
        Self(format!("sqlite://{}", path.display()))
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| text.starts_with(scheme) && text.len() > scheme.len());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(
                "a database URL such as sqlite://.dure/identity.db or postgres://user@host/db"
                    .into(),
            )
        }
    }
}

impl Setting for DatabaseUrl {
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

/// Never shows the password: URLs end up in logs and error messages.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

/// A secret setting (a password): its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(Self(text.to_owned()))
    }
}

impl Setting for Secret {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(Self(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn file_layer_merges_service_table_over_top_level() {
        let text = "log_format = \"json\"\nlisten = \"0.0.0.0:1\"\n[identity]\nlisten = \"127.0.0.1:7001\"\n[posting]\nlisten = \"127.0.0.1:7002\"\n";
        let file = ConfigFile::parse(text, Path::new("dure.toml"), "identity").unwrap();
        let listen: SocketAddr = file
            .layer("listen", None, "0.0.0.0:9".parse().unwrap())
            .unwrap();
        assert_eq!(listen, "127.0.0.1:7001".parse().unwrap());
        let format: String = file.layer("log_format", None, "text".into()).unwrap();
        assert_eq!(format, "json");
    }

    #[test]
    fn flags_and_env_win_over_the_file() {
        let file =
            ConfigFile::parse("listen = \"127.0.0.1:1\"", Path::new("dure.toml"), "x").unwrap();
        let flag: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_eq!(
            file.layer("listen", Some(flag), "127.0.0.1:3".parse().unwrap())
                .unwrap(),
            flag
        );
    }

    #[test]
    fn invalid_file_value_names_key_and_form() {
        let file = ConfigFile::parse(
            "access_token_ttl = \"soon\"",
            Path::new("dure.toml"),
            "identity",
        )
        .unwrap();
        let err = file
            .layer("access_token_ttl", None, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("access_token_ttl"), "{err}");
        assert!(err.contains("a duration such as"), "{err}");
    }

    #[test]
    fn database_urls_are_checked_and_redacted() {
        assert!("mysql://x/y".parse::<DatabaseUrl>().is_err());
        let url: DatabaseUrl = "postgres://dure:hunter2@db:5432/identity".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://dure:***@db:5432/identity");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(
            "sqlite://.dure/x.db"
                .parse::<DatabaseUrl>()
                .unwrap()
                .is_sqlite()
        );
    }
}
