//! The event path: transactional outbox, sequenced feed, idempotent
//! consumers.
//!
//! A service changes its state and, in the same transaction, appends an
//! event to its `outbox` ([`Outbox::append`] takes the transaction, so there
//! is no other way). After commit, a single sequencer per database gives
//! each new row the next feed position: positions follow commit order, so a
//! reader that has seen position N never later finds a row below N (a plain
//! serial column would not promise that under concurrent writers). The
//! producer serves its outbox as a long-polled feed,
//! `GET /internal/events?after=&limit=&wait=`.
//!
//! A consumer pulls from each producer it subscribes to (found through
//! discovery) and handles each event in one transaction with recording the
//! event id in its `inbox` and advancing its cursor: a redelivered event has
//! no second effect, and a crash at any moment loses nothing. A handler that
//! keeps failing is retried with backoff, then the event goes to
//! `dead_letters` and the consumer moves on.
//!
//! Transports, chosen by configuration (`DURE_BUS`), with the same outbox
//! and inbox: `feed` (default, brokerless: consumers pull each producer's
//! feed over HTTP and keep their cursor) and `nats` (a relay publishes the
//! sequenced rows to JetStream; consumers are durable pull consumers).
//!
//! - [`outbox`]: appending, sequencing, serving the feed, pruning.
//! - [`consumer`]: pulling, handling, retrying, dead letters, lag.
//! - [`nats`]: the JetStream relay, streams and consumers.
//! - [`erasure`]: a participant's side of the erasure saga.

pub mod consumer;
pub mod erasure;
pub mod nats;
pub mod outbox;

pub use consumer::{Consumer, DEFAULT_MAX_ATTEMPTS, Handler};
pub use outbox::Outbox;

use crate::config::{ConfigError, ConfigFile};
use crate::db::{Backend, Db};
use sqlx::{AssertSqlSafe, Executor};

/// How events travel between services.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bus {
    /// Consumers pull each producer's HTTP feed.
    #[default]
    Feed,
    /// NATS JetStream at this URL.
    Nats(String),
}

/// The `--bus` flag of services that publish or consume events.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BusArgs {
    /// The event transport: `feed` (brokerless) or a NATS URL such as nats://127.0.0.1:4222 [default: feed]
    #[arg(long, env = "DURE_BUS", value_name = "BUS")]
    pub bus: Option<String>,
    /// How long a producer keeps delivered events: `forever`, or a duration such as 30d; a read model cannot be rebuilt past a pruned history (docs/decisions/0012) [default: forever]
    #[arg(long, env = "DURE_EVENT_RETENTION", value_name = "DURATION")]
    pub event_retention: Option<String>,
}

impl BusArgs {
    /// How long the outbox keeps sequenced rows; `None` keeps them all.
    pub fn retention(&self, file: &ConfigFile) -> Result<Option<std::time::Duration>, ConfigError> {
        match file
            .layer_opt::<String>("event_retention", self.event_retention.clone())?
            .as_deref()
            .map(str::trim)
        {
            None | Some("forever") => Ok(None),
            Some(text) => crate::config::parse_duration(text)
                .map(Some)
                .map_err(|expected| ConfigError::Invalid {
                    key: "event_retention".into(),
                    origin: "configuration".into(),
                    expected: format!("forever or {expected}"),
                    value: text.into(),
                }),
        }
    }

    pub fn resolve(&self, file: &ConfigFile) -> Result<Bus, ConfigError> {
        match file
            .layer_opt::<String>("bus", self.bus.clone())?
            .as_deref()
            .map(str::trim)
        {
            None | Some("feed") => Ok(Bus::Feed),
            Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
                Ok(Bus::Nats(url.to_owned()))
            }
            Some(other) => Err(ConfigError::Invalid {
                key: "bus".into(),
                origin: "configuration".into(),
                expected: "feed or a nats:// URL".into(),
                value: other.into(),
            }),
        }
    }
}

impl Bus {
    /// The JetStream context for the `nats` bus.
    pub async fn connect(&self) -> anyhow::Result<Option<async_nats::jetstream::Context>> {
        match self {
            Self::Feed => Ok(None),
            Self::Nats(url) => Ok(Some(nats::connect(url).await?)),
        }
    }
}

/// The tables of the event path, created when missing. They are the same in
/// every service, so the chassis owns their DDL rather than each service's
/// migrations.
pub async fn install(db: &Db) -> anyhow::Result<()> {
    let ddl = match db.backend() {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    for statement in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        db.writer()
            .execute(AssertSqlSafe(statement.to_owned()))
            .await?;
    }
    Ok(())
}

const SQLITE: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id           TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    position     INTEGER UNIQUE,
    sequenced_at TEXT,
    published_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unsequenced ON outbox (created_at, id) WHERE position IS NULL;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (position) WHERE published_at IS NULL AND position IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbox (
    event_id   TEXT PRIMARY KEY,
    handled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_cursors (
    producer   TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    user_id   TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    event_id   TEXT PRIMARY KEY,
    producer   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    envelope   TEXT NOT NULL,
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    failed_at  TEXT NOT NULL
)";

const POSTGRES: &str = r#"
CREATE TABLE IF NOT EXISTS outbox (
    id           TEXT COLLATE "C" PRIMARY KEY,
    event_type   TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    position     BIGINT UNIQUE,
    sequenced_at TEXT COLLATE "C",
    published_at TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS outbox_unsequenced ON outbox (created_at, id) WHERE position IS NULL;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (position) WHERE published_at IS NULL AND position IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbox (
    event_id   TEXT COLLATE "C" PRIMARY KEY,
    handled_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_cursors (
    producer   TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    user_id   TEXT COLLATE "C" PRIMARY KEY,
    erased_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    event_id   TEXT COLLATE "C" PRIMARY KEY,
    producer   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    envelope   TEXT NOT NULL,
    error      TEXT NOT NULL,
    attempts   BIGINT NOT NULL,
    failed_at  TEXT COLLATE "C" NOT NULL
)"#;
