//! A connection pool for a service's own database, on SQLite or Postgres.
//!
//! Services write their queries once against sqlx's `Any` driver (runtime
//! `query`/`query_as` with `$1` placeholders, which both backends accept) and
//! keep one migrations folder per backend, since DDL differs. Column types are
//! limited to what `Any` carries: TEXT, BIGINT, INTEGER, BOOLEAN and BLOB; ids
//! and times are stored as TEXT (UUID strings, fixed-width RFC 3339 UTC), which
//! sorts correctly on both.

use crate::config::DatabaseUrl;
use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::path::Path;
use std::time::Duration;

pub use sqlx::Any;
/// A write transaction on the service's database.
pub type Tx = sqlx::Transaction<'static, Any>;

/// The two backends a service database can live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's database: a pool plus which backend it is.
///
/// On SQLite, which lets one transaction write at a time, write
/// transactions take the one connection of a separate writer pool: they
/// wait their turn in this process, in order, instead of in SQLite's busy
/// handler, which sleeps in growing steps and let a queued write miss the
/// lock for up to 100 ms at a time. Reads use the other pool and, in WAL
/// mode, never wait for the writer. On Postgres both are the same pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
    /// Stops the background checkpoints once the last clone is dropped.
    _checkpoints: Option<std::sync::Arc<AbortOnDrop>>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The migrations of one service, one set per backend (`sqlx::migrate!`).
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

impl Db {
    /// Connects and applies the service's migrations. A SQLite file and its
    /// directory are created when missing; SQLite runs in WAL mode with
    /// foreign keys on.
    pub async fn connect(url: &DatabaseUrl, migrations: &Migrations) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend = if url.is_sqlite() {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => connect_sqlite(url).await?,
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url.as_str())
                    .await
                    .with_context(|| format!("cannot connect to {url}"))?;
                (pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        // Postgres serialises concurrent migrators with an advisory lock;
        // SQLite has none, so a second process starting on a fresh file at
        // the same moment can collide with the first. Its retry then finds
        // the migrations applied.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match migrator.run(&writer).await {
                Ok(()) => break,
                Err(err) if backend == Backend::Sqlite && attempts < 5 => {
                    tracing::debug!(error = %err, "migration collided; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err)
                        .context(format!("cannot apply migrations to {url}")));
                }
            }
        }
        match backend {
            Backend::Sqlite => {
                register_for_metrics(url, &pool, "read");
                register_for_metrics(url, &writer, "write");
            }
            Backend::Postgres => register_for_metrics(url, &pool, "shared"),
        }
        let checkpoints = (backend == Backend::Sqlite).then(|| {
            let task = tokio::spawn(checkpoint(pool.clone()));
            std::sync::Arc::new(AbortOnDrop(task.abort_handle()))
        });
        Ok(Self {
            pool,
            writer,
            backend,
            _checkpoints: checkpoints,
        })
    }

    /// The pool to read with.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for a single statement that writes outside a transaction
    /// ([`begin`](Self::begin) for anything longer).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes
    /// can fail with "database is locked" instead of waiting its turn.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Whether the database answers: what `/readyz` asks.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A `/readyz` check: ready while the database answers.
    pub fn readiness(&self) -> crate::http::Readiness {
        let db = self.clone();
        std::sync::Arc::new(move || {
            let db = db.clone();
            Box::pin(async move {
                if db.ping().await {
                    Ok(())
                } else {
                    Err("database unreachable".to_owned())
                }
            })
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Moves the WAL's pages into the database file off the write path: the
/// writer's own automatic checkpoint would run inside a request's commit.
/// A passive checkpoint waits for no one and blocks no writer; the writer
/// still checkpoints by itself should the WAL ever grow past
/// [`WAL_SAFETY_PAGES`] (this task stopped or starved by readers).
async fn checkpoint(pool: AnyPool) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        ticks.tick().await;
        if let Err(err) = pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::debug!(error = %err, "checkpoint failed; the next one retries");
        }
    }
}

/// The readers' pool and the writer's.
async fn connect_sqlite(url: &DatabaseUrl) -> anyhow::Result<(AnyPool, AnyPool)> {
    let raw = url.as_str();
    let path_and_query = raw
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path_and_query.split('?').next().unwrap_or_default();
    let in_memory = path == ":memory:" || path.is_empty();
    if !in_memory
        && let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let url = if in_memory || raw.contains("mode=") {
        raw.to_owned()
    } else if raw.contains('?') {
        format!("{raw}&mode=rwc")
    } else {
        format!("{raw}?mode=rwc")
    };
    if in_memory {
        // One in-memory database exists per connection: keep exactly one,
        // for reads and writes alike.
        let pool = sqlite_pool(&url, 1, PRAGMAS.to_owned())
            .await
            .with_context(|| format!("cannot open {}", url_for_display(raw)))?;
        return Ok((pool.clone(), pool));
    }
    let writer_pragmas = format!("{PRAGMAS} PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES};");
    let writer = sqlite_pool(&url, 1, writer_pragmas).await;
    let readers = sqlite_pool(&url, READERS, PRAGMAS.to_owned()).await;
    match (readers, writer) {
        (Ok(readers), Ok(writer)) => Ok((readers, writer)),
        (Err(err), _) | (_, Err(err)) => {
            Err(anyhow::Error::new(err).context(format!("cannot open {}", url_for_display(raw))))
        }
    }
}

/// Read connections of a SQLite database; reads in WAL mode run side by
/// side and beside the writer.
const READERS: u32 = 4;
/// How often the WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL pages beyond which the writer checkpoints by itself (about 40 MB).
const WAL_SAFETY_PAGES: u32 = 10_000;

/// Every connection: WAL, and `synchronous = FULL`, which syncs the WAL at
/// each commit, so that an acknowledged write survives a power loss too,
/// not only a crash of the process (docs/decisions/0015). `busy_timeout`
/// covers the writers of other processes (replicas of the service).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

async fn sqlite_pool(url: &str, connections: u32, pragmas: String) -> Result<AnyPool, sqlx::Error> {
    let pragmas: std::sync::Arc<str> = pragmas.into();
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(pragmas.to_string())).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
}

fn url_for_display(raw: &str) -> String {
    crate::config::redact_url(raw)
}

/// Creates the Postgres database named in `url` when it does not exist yet,
/// by connecting to the server's `postgres` database. For `dure up` and tests.
pub async fn create_postgres_database(url: &str) -> anyhow::Result<()> {
    install_default_drivers();
    let (server, name) = url
        .rsplit_once('/')
        .context("a Postgres URL must end in /DATABASE")?;
    let name = name.split('?').next().unwrap_or_default();
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database names must be made of letters, digits and _"
    );
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot connect to {}", url_for_display(server)))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&admin)
        .await?;
    if exists.is_none() {
        // Identifiers cannot be bound; the name was checked above.
        let result = admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await;
        if let Err(err) = result {
            // Someone else may have created it in between: that is fine.
            let raced =
                matches!(&err, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P04"));
            if !raced {
                return Err(err.into());
            }
        }
    }
    admin.close().await;
    Ok(())
}

/// Drops a Postgres database (tests clean up after themselves with this).
pub async fn drop_postgres_database(url: &str) -> anyhow::Result<()> {
    install_default_drivers();
    let (server, name) = url.rsplit_once('/').context("no database in URL")?;
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await?;
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await?;
    admin.close().await;
    Ok(())
}

/// Pools whose use `/metrics` reports, by database name.
/// Each pool by database name and role: `read` and `write` on SQLite (one
/// writer connection), `shared` on Postgres.
static POOLS: std::sync::Mutex<Vec<(String, &'static str, AnyPool)>> =
    std::sync::Mutex::new(Vec::new());

fn register_for_metrics(url: &DatabaseUrl, pool: &AnyPool, role: &'static str) {
    let raw = url.as_str();
    let name = raw
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(raw)
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".db")
        .to_owned();
    if let Ok(mut pools) = POOLS.lock() {
        pools.retain(|(_, _, p)| !p.is_closed());
        pools.push((name, role, pool.clone()));
    }
}

/// Records how many connections each pool holds and how many are in use;
/// called before each `/metrics` render.
pub fn record_pool_metrics() {
    let Ok(pools) = POOLS.lock() else { return };
    for (name, role, pool) in pools.iter().filter(|(_, _, p)| !p.is_closed()) {
        let size = f64::from(pool.size());
        let idle = pool.num_idle() as f64;
        let labels = |state: &'static str| {
            [
                ("database", name.clone()),
                ("pool", (*role).to_owned()),
                ("state", state.to_owned()),
            ]
        };
        metrics::gauge!("db_pool_connections", &labels("idle")).set(idle);
        metrics::gauge!("db_pool_connections", &labels("in_use")).set(size - idle);
    }
}
