//! Rebuild by replay: a new generation filled from position 0 of every
//! producer's feed, next to the live one, which keeps answering reads and
//! taking live events. When the new generation has caught up with every
//! producer's head and is at least as far as the live one, a single
//! transaction makes it live; the old one is then dropped. Live events that
//! reach the new generation after the switch and were replayed already are
//! skipped by position (projection::apply).
//!
//! The generation's row records its owner and is touched on every batch; if
//! the owning instance stops, another (or the same, restarted) takes the
//! rebuild over where it was.

use crate::projection;
use dure_chassis::client::Client;
use dure_chassis::db::{Backend, Db};
use dure_chassis::discovery::Directory;
use dure_chassis::events::outbox::FeedPage;
use dure_chassis::{ApiError, clock};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

/// Events fetched per request while replaying.
const BATCH: i64 = 500;
/// A building generation whose owner has not touched it for this long is
/// taken over.
const STALE: Duration = Duration::from_secs(30);
/// Attempts at one event before the replay skips it, as the live consumer
/// moves a failing event to its dead letters.
const ATTEMPTS: u32 = 3;

/// What `GET /api/reports/rebuild` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `running` while a generation is being built, else `idle`.
    pub state: &'static str,
    pub live_generation: i64,
    /// When the live generation took over (absent for the first one).
    pub switched_at: Option<String>,
    pub building: Option<Building>,
    /// Why the last rebuild failed, if the last one failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Building {
    pub generation: i64,
    pub started_at: String,
    /// How far the replay is per producer.
    pub positions: BTreeMap<String, i64>,
}

/// Where the rebuild reads and writes.
#[derive(Clone, Debug)]
pub struct Rebuilder {
    pub db: Db,
    pub directory: Directory,
    /// This instance, as owner of a building generation.
    pub owner: String,
    pub client: Client,
    /// For the check before answering a request: a producer that does not
    /// answer at once is checked again by the replay itself.
    pub quick: Client,
}

impl Rebuilder {
    pub fn new(db: Db, directory: Directory) -> Self {
        Self {
            db,
            directory,
            owner: uuid::Uuid::now_v7().to_string(),
            client: Client::new(Duration::from_secs(30)),
            quick: Client::new(Duration::from_secs(2)),
        }
    }

    /// Starts a rebuild; 409 if one runs or a producer's history is no
    /// longer complete.
    pub async fn start(&self) -> Result<i64, ApiError> {
        if let Some((generation,)) =
            sqlx::query_as::<_, (i64,)>("SELECT gen FROM generations WHERE state = 'building'")
                .fetch_optional(self.db.pool())
                .await?
        {
            return Err(ApiError::Conflict(format!(
                "generation {generation} is being rebuilt; wait until it is live"
            )));
        }
        for producer in crate::PRODUCERS {
            match self.check_history(&self.quick, producer).await {
                Err(History::Pruned(message)) => return Err(ApiError::Conflict(message)),
                Err(History::Unreadable(_)) | Ok(()) => {}
            }
        }
        let now = clock::now();
        let mut tx = self.db.begin().await?;
        let (next,): (i64,) = sqlx::query_as("SELECT MAX(gen) + 1 FROM generations")
            .fetch_one(&mut *tx)
            .await?;
        // The unique state check: a second POST racing this one finds the
        // building row when its own transaction starts (SQLite) or fails on
        // the index (Postgres).
        sqlx::query(
            "INSERT INTO generations (gen, state, started_at, updated_at, owner) \
             SELECT $1, 'building', $2, $2, $3 WHERE NOT EXISTS \
             (SELECT 1 FROM generations WHERE state = 'building')",
        )
        .bind(next)
        .bind(&now)
        .bind(&self.owner)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        .eq(&1)
        .then_some(())
        .ok_or_else(|| ApiError::Conflict("a rebuild is already running".into()))?;
        tx.commit().await?;
        tracing::info!(generation = next, "rebuild started");
        tokio::spawn(self.clone().run(next));
        Ok(next)
    }

    /// A producer's feed must still begin at position 1: a pruned history
    /// would rebuild an incomplete model without anyone noticing.
    async fn check_history(&self, client: &Client, producer: &str) -> Result<(), History> {
        let page = self
            .fetch(client, producer, 0, 1)
            .await
            .map_err(History::Unreadable)?;
        let first = page.events.first().map(|e| e.position);
        let complete = match first {
            Some(position) => position == 1,
            None => page.last_position == 0,
        };
        if complete {
            Ok(())
        } else {
            Err(History::Pruned(format!(
                "{producer}'s event history was pruned (it begins after position {}); \
                 a rebuild would be incomplete: keep the history (DURE_EVENT_RETENTION=forever, \
                 docs/decisions/0012)",
                first.map_or(page.last_position, |p| p - 1)
            )))
        }
    }

    async fn fetch(
        &self,
        client: &Client,
        producer: &str,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<FeedPage> {
        let instances = self.directory.instances(producer);
        let instance = instances
            .first()
            .ok_or_else(|| anyhow::anyhow!("no instance of {producer} is registered"))?;
        let url = format!(
            "{}/internal/events?after={after}&limit={limit}",
            instance.address
        );
        Ok(client.get(url).send().await?.error_for_status()?.json()?)
    }

    /// Takes over building generations whose owner stopped, now and then.
    pub async fn supervise(self) {
        loop {
            match self.claim_stale().await {
                Ok(Some(generation)) => {
                    tracing::info!(generation = generation, "taking over an unfinished rebuild");
                    self.clone().run(generation).await;
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "looking for unfinished rebuilds failed"),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    async fn claim_stale(&self) -> anyhow::Result<Option<i64>> {
        let cutoff = clock::format(time::OffsetDateTime::now_utc() - STALE);
        let claimed = sqlx::query(
            "UPDATE generations SET owner = $1, updated_at = $2 \
             WHERE state = 'building' AND updated_at < $3",
        )
        .bind(&self.owner)
        .bind(clock::now())
        .bind(cutoff)
        .execute(self.db.writer())
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT gen FROM generations WHERE state = 'building' AND owner = $1")
                .bind(&self.owner)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(g,)| g))
    }

    /// Replays into `generation` until it is live, or until another instance owns it.
    async fn run(self, generation: i64) {
        let mut retry = Duration::from_millis(200);
        let mut checked = 0;
        while checked < crate::PRODUCERS.len() {
            match self
                .check_history(&self.client, crate::PRODUCERS[checked])
                .await
            {
                Ok(()) => checked += 1,
                Err(History::Pruned(message)) => {
                    tracing::error!(generation, "{message}");
                    if let Err(err) = self.fail(generation, &message).await {
                        tracing::warn!(error = %err, "recording the failed rebuild failed");
                    }
                    return;
                }
                Err(History::Unreadable(err)) => {
                    tracing::debug!(error = format!("{err:#}"), "feed unavailable; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
        loop {
            match self.round(generation).await {
                Ok(Round::Busy) => retry = Duration::from_millis(200),
                Ok(Round::CaughtUp) => match self.switch(generation).await {
                    Ok(true) => return,
                    Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(err) => {
                        tracing::warn!(generation = generation, error = %err, "switching generations failed; retrying");
                        tokio::time::sleep(retry).await;
                    }
                },
                Ok(Round::Disowned) => {
                    tracing::info!(
                        generation = generation,
                        "another instance continues this rebuild"
                    );
                    return;
                }
                Err(err) => {
                    tracing::warn!(
                        generation = generation,
                        error = format!("{err:#}"),
                        "rebuild step failed; retrying"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One batch from each producer.
    async fn round(&self, generation: i64) -> anyhow::Result<Round> {
        let mut caught_up = true;
        for producer in crate::PRODUCERS {
            let after = position(&self.db, generation, producer).await?;
            let page = self.fetch(&self.client, producer, after, BATCH).await?;
            if page.events.is_empty() {
                continue;
            }
            caught_up = false;
            if !self.apply_batch(generation, &page).await? {
                return Ok(Round::Disowned);
            }
        }
        Ok(if caught_up {
            Round::CaughtUp
        } else {
            Round::Busy
        })
    }

    /// Applies a page in one transaction, or event by event if that fails;
    /// false if this instance no longer owns the generation.
    async fn apply_batch(&self, generation: i64, page: &FeedPage) -> anyhow::Result<bool> {
        let batch = async {
            let mut tx = self.db.begin().await?;
            if !self.touch(&mut tx, generation).await? {
                return Ok(false);
            }
            for entry in &page.events {
                projection::apply(&mut tx, generation, &entry.event, Some(entry.position)).await?;
            }
            tx.commit().await?;
            anyhow::Ok(true)
        };
        match batch.await {
            Ok(owned) => return Ok(owned),
            Err(err) => {
                tracing::debug!(
                    error = format!("{err:#}"),
                    "batch failed; applying one by one"
                )
            }
        }
        for entry in &page.events {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let one = async {
                    let mut tx = self.db.begin().await?;
                    if !self.touch(&mut tx, generation).await? {
                        return Ok(false);
                    }
                    projection::apply(&mut tx, generation, &entry.event, Some(entry.position))
                        .await?;
                    tx.commit().await?;
                    anyhow::Ok(true)
                };
                match one.await {
                    Ok(true) => break,
                    Ok(false) => return Ok(false),
                    Err(err) if attempt < ATTEMPTS => {
                        tracing::debug!(
                            error = format!("{err:#}"),
                            "replaying an event failed; retrying"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(err) => {
                        tracing::warn!(event_id = %entry.event.id, event_type = %entry.event.kind,
                            error = format!("{err:#}"), "rebuild skips an event it cannot apply, as the live consumer dead-letters it");
                        self.skip(generation, &entry.event, entry.position).await?;
                        break;
                    }
                }
            }
        }
        Ok(true)
    }

    async fn skip(
        &self,
        generation: i64,
        event: &dure_contracts::events::Envelope,
        position: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO positions (gen, producer, position) VALUES ($1, $2, $3) \
             ON CONFLICT (gen, producer) DO UPDATE SET position = excluded.position",
        )
        .bind(generation)
        .bind(projection::producer(event))
        .bind(position)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Ends a rebuild that cannot be complete; the live generation stays.
    async fn fail(&self, generation: i64, message: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE generations SET state = 'failed', error = $1, updated_at = $2, owner = NULL \
             WHERE gen = $3 AND state = 'building'",
        )
        .bind(message)
        .bind(clock::now())
        .bind(generation)
        .execute(self.db.writer())
        .await?;
        drop_rows(&self.db, generation).await
    }

    async fn touch(&self, tx: &mut dure_chassis::db::Tx, generation: i64) -> anyhow::Result<bool> {
        let touched = sqlx::query(
            "UPDATE generations SET updated_at = $1 WHERE gen = $2 AND owner = $3 AND state = 'building'",
        )
        .bind(clock::now())
        .bind(generation)
        .bind(&self.owner)
        .execute(&mut **tx)
        .await?;
        Ok(touched.rows_affected() == 1)
    }

    /// Makes `gen` live if it is at least as far as the live generation for
    /// every producer; then drops the old one.
    async fn switch(&self, generation: i64) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if self.db.backend() == Backend::Postgres {
            // Waits for live consumers holding the live row (FOR SHARE) to
            // commit, and keeps new ones out until this commits.
            sqlx::query("SELECT gen FROM generations WHERE state = 'live' FOR UPDATE")
                .execute(&mut *tx)
                .await?;
        }
        let (live,): (i64,) = sqlx::query_as("SELECT gen FROM generations WHERE state = 'live'")
            .fetch_one(&mut *tx)
            .await?;
        let behind: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM positions l WHERE l.gen = $1 AND l.position > \
             COALESCE((SELECT r.position FROM positions r WHERE r.gen = $2 AND r.producer = l.producer), 0)",
        )
        .bind(live)
        .bind(generation)
        .fetch_one(&mut *tx)
        .await?;
        if behind.0 > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let now = clock::now();
        sqlx::query("UPDATE generations SET state = 'retired' WHERE gen = $1")
            .bind(live)
            .execute(&mut *tx)
            .await?;
        let switched = sqlx::query(
            "UPDATE generations SET state = 'live', switched_at = $1, owner = NULL \
             WHERE gen = $2 AND state = 'building' AND owner = $3",
        )
        .bind(&now)
        .bind(generation)
        .bind(&self.owner)
        .execute(&mut *tx)
        .await?;
        if switched.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(true);
        }
        tx.commit().await?;
        tracing::info!(
            generation = generation,
            replaced = live,
            "rebuilt generation is live"
        );
        metrics::counter!("reporting_rebuilds_total").increment(1);
        drop_generation(&self.db, live).await?;
        Ok(true)
    }
}

/// Why a producer's history cannot be replayed.
enum History {
    /// It no longer begins at position 1.
    Pruned(String),
    /// The feed did not answer (yet).
    Unreadable(anyhow::Error),
}

enum Round {
    Busy,
    CaughtUp,
    Disowned,
}

async fn position(db: &Db, generation: i64, producer: &str) -> anyhow::Result<i64> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT position FROM positions WHERE gen = $1 AND producer = $2")
            .bind(generation)
            .bind(producer)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map_or(0, |(p,)| p))
}

/// Deletes a retired generation's rows, then the generation.
async fn drop_generation(db: &Db, generation: i64) -> anyhow::Result<()> {
    drop_rows(db, generation).await?;
    sqlx::query("DELETE FROM generations WHERE gen = $1 AND state = 'retired'")
        .bind(generation)
        .execute(db.writer())
        .await?;
    Ok(())
}

async fn drop_rows(db: &Db, generation: i64) -> anyhow::Result<()> {
    for table in ["positions", "users", "postings", "comments", "notices"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE gen = $1"
        )))
        .bind(generation)
        .execute(db.writer())
        .await?;
    }
    Ok(())
}

/// The rebuild's state, for `GET /api/reports/rebuild`.
pub async fn status(db: &Db) -> Result<Status, ApiError> {
    let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT gen, state, started_at, switched_at FROM generations WHERE state IN ('live', 'building')",
    )
    .fetch_all(db.pool())
    .await?;
    let mut status = Status {
        state: "idle",
        live_generation: 0,
        switched_at: None,
        building: None,
        last_error: None,
    };
    let failed: Option<(i64, String)> = sqlx::query_as(
        "SELECT gen, error FROM generations WHERE state = 'failed' ORDER BY gen DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    for (generation, state, started_at, switched_at) in rows {
        if state == "live" {
            status.live_generation = generation;
            status.switched_at = switched_at;
        } else {
            let positions: Vec<(String, i64)> =
                sqlx::query_as("SELECT producer, position FROM positions WHERE gen = $1")
                    .bind(generation)
                    .fetch_all(db.pool())
                    .await?;
            status.state = "running";
            status.building = Some(Building {
                generation,
                started_at,
                positions: positions.into_iter().collect(),
            });
        }
    }
    if let Some((generation, error)) = failed
        && generation > status.live_generation
    {
        status.last_error = Some(error);
    }
    Ok(status)
}
