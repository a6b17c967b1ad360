//! The producing side: append in the state change's transaction, sequence
//! after commit, serve the feed.

use crate::ApiError;
use crate::clock;
use crate::db::{Backend, Db, Tx};
use crate::http::Query;
use crate::telemetry::trace;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use dure_contracts::events::{Envelope, Payload};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

/// Rows sequenced per pass.
const SEQUENCE_BATCH: i64 = 500;
/// How often the sequencer looks for rows committed by other replicas.
const SEQUENCE_POLL: Duration = Duration::from_millis(100);
/// How often `events_outbox_backlog` is counted.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);
/// How often rows past their retention are deleted (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A service's outbox: append events, and serve them as a feed.
#[derive(Clone, Debug)]
pub struct Outbox {
    source: Arc<str>,
    db: Db,
    appended: Arc<Notify>,
    last_position: watch::Receiver<i64>,
    /// Set when the service begins to stop: long polls answer at once, so
    /// that draining does not wait out every consumer's `wait`.
    stopping: Arc<watch::Sender<bool>>,
}

impl Outbox {
    /// Starts the sequencer of `db`'s outbox (and, with a JetStream context,
    /// the relay to NATS); `service` names the source. Sequenced rows older
    /// than `retention` are pruned; `None` keeps the whole history, which is
    /// what a read model rebuilt by replay needs (docs/decisions/0012).
    pub fn start(
        service: &str,
        db: Db,
        nats: Option<async_nats::jetstream::Context>,
        retention: Option<Duration>,
    ) -> Self {
        let appended = Arc::new(Notify::new());
        let (position_tx, last_position) = watch::channel(0);
        let relayed = nats.is_some();
        tokio::spawn(sequence(
            db.clone(),
            appended.clone(),
            position_tx,
            relayed,
            retention,
        ));
        if let Some(context) = nats {
            let positions = last_position.clone();
            tokio::spawn(super::nats::relay(
                db.clone(),
                service.to_owned(),
                context,
                positions,
            ));
        }
        Self {
            source: format!("/dure/{service}").into(),
            db,
            appended,
            last_position,
            stopping: Arc::new(watch::channel(false).0),
        }
    }

    /// Ends the feed's long polls now and answers later ones without
    /// waiting: the service is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Appends an event inside the caller's transaction: it exists exactly
    /// when the state change does. Finish the transaction with
    /// [`commit`](Self::commit) to have it sequenced at once.
    pub async fn append<P: Payload>(&self, tx: &mut Tx, payload: &P) -> Result<(), ApiError> {
        let span = tracing::info_span!(
            "outbox append",
            otel.name = %format_args!("outbox append {}", P::TYPE),
            otel.kind = "producer",
            event.type = P::TYPE,
        );
        self.append_in(tx, payload).instrument(span).await
    }

    async fn append_in<P: Payload>(&self, tx: &mut Tx, payload: &P) -> Result<(), ApiError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = clock::now();
        let envelope = Envelope {
            specversion: "1.0".into(),
            id: id.clone(),
            source: self.source.to_string(),
            kind: P::TYPE.into(),
            time: now.clone(),
            subject: Some(payload.subject()),
            datacontenttype: "application/json".into(),
            data: serde_json::to_value(payload).map_err(|e| ApiError::Internal(e.into()))?,
            // The consumer's span joins this trace.
            traceparent: trace::current_traceparent(),
        };
        let json = serde_json::to_string(&envelope).map_err(|e| ApiError::Internal(e.into()))?;
        sqlx::query(
            "INSERT INTO outbox (id, event_type, envelope, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(P::TYPE)
        .bind(json)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Commits a transaction that appended events and wakes the sequencer:
    /// one call, so that no commit leaves its events waiting for the next
    /// poll.
    pub async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.appended.notify_one();
        Ok(())
    }

    /// Wakes the sequencer, for events appended in a transaction that was
    /// committed elsewhere (a consumer's).
    pub fn wake(&self) {
        self.appended.notify_one();
    }

    /// `GET /internal/events` on this outbox.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/internal/events", get(feed))
            .with_state(self.clone())
    }
}

/// Assigns positions to committed, unsequenced rows in the order it finds
/// them, under a lock so that one sequencer runs per database. Also prunes.
async fn sequence(
    db: Db,
    appended: Arc<Notify>,
    last_position: watch::Sender<i64>,
    relayed: bool,
    retention: Option<Duration>,
) {
    // Each commit wakes this loop, so housekeeping goes by the clock.
    let mut backlog_counted = tokio::time::Instant::now();
    let mut pruned: Option<tokio::time::Instant> = None;
    loop {
        match sequence_once(&db).await {
            Ok(position) => {
                last_position.send_if_modified(|current| {
                    let changed = *current != position;
                    *current = position;
                    changed
                });
            }
            Err(err) => tracing::warn!(error = %err, "sequencing the outbox failed; retrying"),
        }
        if backlog_counted.elapsed() >= BACKLOG_EVERY {
            record_backlog(&db, relayed).await;
            backlog_counted = tokio::time::Instant::now();
        }
        if let Some(retention) = retention
            && pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            if let Err(err) = prune(&db, relayed, retention).await {
                tracing::warn!(error = %err, "pruning the outbox failed");
            }
            pruned = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            () = appended.notified() => {}
            () = tokio::time::sleep(SEQUENCE_POLL) => {}
        }
    }
}

/// `events_outbox_backlog`: events committed but not yet sequenced, or
/// (relayed to NATS) not yet published. Both counts use partial indexes.
async fn record_backlog(db: &Db, relayed: bool) {
    let query = if relayed {
        "SELECT (SELECT COUNT(*) FROM outbox WHERE position IS NULL) + \
                (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND position IS NOT NULL)"
    } else {
        "SELECT COUNT(*) FROM outbox WHERE position IS NULL"
    };
    match sqlx::query_as::<_, (i64,)>(query)
        .fetch_one(db.pool())
        .await
    {
        Ok((backlog,)) => metrics::gauge!("events_outbox_backlog").set(backlog as f64),
        Err(err) => tracing::debug!(error = %err, "counting the outbox backlog failed"),
    }
}

/// One pass; returns the highest position afterwards.
async fn sequence_once(db: &Db) -> anyhow::Result<i64> {
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        // One sequencer per database, however many replicas run.
        sqlx::query("SELECT pg_advisory_xact_lock(7421)")
            .execute(&mut *tx)
            .await?;
    }
    let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(position) FROM outbox")
        .fetch_one(&mut *tx)
        .await?;
    let mut position = max.unwrap_or(0);
    let pending: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM outbox WHERE position IS NULL ORDER BY created_at, id LIMIT $1",
    )
    .bind(SEQUENCE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if pending.is_empty() {
        tx.rollback().await?;
        return Ok(position);
    }
    let now = clock::now();
    for (id,) in &pending {
        position += 1;
        sqlx::query("UPDATE outbox SET position = $1, sequenced_at = $2 WHERE id = $3")
            .bind(position)
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    metrics::counter!("events_sequenced_total").increment(pending.len() as u64);
    Ok(position)
}

/// Drops rows sequenced longer ago than the retention period (and, with the
/// NATS relay, only once the broker has them).
async fn prune(db: &Db, relayed: bool, retention: Duration) -> anyhow::Result<()> {
    let cutoff = clock::format(time::OffsetDateTime::now_utc() - retention);
    // The newest row always stays: positions continue from it, and the feed
    // shows where the kept history begins.
    let sql = if relayed {
        "DELETE FROM outbox WHERE position IS NOT NULL AND sequenced_at < $1 AND published_at IS NOT NULL \
         AND position < (SELECT MAX(position) FROM outbox)"
    } else {
        "DELETE FROM outbox WHERE position IS NOT NULL AND sequenced_at < $1 \
         AND position < (SELECT MAX(position) FROM outbox)"
    };
    let pruned = sqlx::query(sql).bind(cutoff).execute(db.writer()).await?;
    if pruned.rows_affected() > 0 {
        tracing::info!(
            rows = pruned.rows_affected(),
            "pruned delivered outbox rows"
        );
    }
    Ok(())
}

/// `?after=&limit=&wait=`
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
    wait: Option<String>,
}

/// One entry of the feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedEvent {
    pub position: i64,
    pub event: Envelope,
}

/// The feed's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    pub last_position: i64,
}

async fn feed(
    State(outbox): State<Outbox>,
    Query(query): Query<FeedQuery>,
) -> Result<axum::Json<FeedPage>, ApiError> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let wait = match query.wait.as_deref() {
        None => Duration::ZERO,
        Some(text) => crate::config::parse_duration(text)
            .map_err(|expected| ApiError::BadRequest(format!("`wait` must be {expected}")))?
            .min(Duration::from_secs(60)),
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut positions = outbox.last_position.clone();
    let mut stopping = outbox.stopping.subscribe();
    loop {
        positions.borrow_and_update();
        let events = read(&outbox.db, after, limit).await?;
        let last_position = (*positions.borrow()).max(events.last().map_or(0, |e| e.position));
        if !events.is_empty()
            || tokio::time::Instant::now() >= deadline
            || *stopping.borrow_and_update()
        {
            return Ok(axum::Json(FeedPage {
                events,
                last_position,
            }));
        }
        tokio::select! {
            changed = positions.changed() => {
                if changed.is_err() {
                    return Ok(axum::Json(FeedPage { events, last_position }));
                }
            }
            _ = stopping.changed() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn read(db: &Db, after: i64, limit: i64) -> Result<Vec<FeedEvent>, ApiError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, envelope FROM outbox WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(position, envelope)| {
            let event =
                serde_json::from_str(&envelope).map_err(|e| ApiError::Internal(e.into()))?;
            Ok(FeedEvent { position, event })
        })
        .collect()
}
