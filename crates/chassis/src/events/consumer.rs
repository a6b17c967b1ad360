//! The consuming side: pull a producer's feed, handle each event exactly
//! once, keep the cursor in the consumer's own database.

use super::outbox::FeedPage;
use crate::clock;
use crate::db::{Db, Tx};
use crate::discovery::Directory;
use crate::telemetry::trace;
use dure_contracts::events::Envelope;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What a consuming service does with events. `handle` runs inside the
/// transaction that also records the event as handled; an error rolls both
/// back and the event is tried again.
pub trait Handler: Send + Sync + 'static {
    /// The event types this handler wants; others are skipped.
    fn wants(&self, event_type: &str) -> bool;

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// [`handle`](Self::handle), for a handler that also wants the event's
    /// position in its producer's feed (known on every transport, `None` only
    /// for a message relayed before positions travelled with it).
    fn handle_at<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
        _position: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.handle(tx, event)
    }

    /// Runs in the transaction that moves an event to the dead letters, so
    /// that a handler can tell someone (a saga's orchestrator) it gave up.
    fn dead_lettered<'a>(
        &'a self,
        _tx: &'a mut Tx,
        _event: &'a Envelope,
        _error: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Runs after the handling transaction committed (e.g. to push a live
    /// notification); failures here are only logged.
    fn after_commit<'a>(&'a self, _event: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

impl std::fmt::Debug for dyn Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// Attempts before an event goes to the dead letters, unless a service says
/// otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Consumes one producer's feed.
pub struct Consumer {
    /// The consuming service, for logs and metrics.
    pub name: String,
    /// The producing service, as discovery knows it.
    pub producer: String,
    pub db: Db,
    pub directory: Directory,
    pub handler: Arc<dyn Handler>,
    /// Attempts before an event goes to the dead letters.
    pub max_attempts: u32,
    /// JetStream, for the `nats` bus; `None` pulls the producer's feed.
    pub nats: Option<async_nats::jetstream::Context>,
}

impl Consumer {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        if let Some(context) = self.nats.clone() {
            return self.run_nats(context).await;
        }
        let client = crate::client::Client::new(Duration::from_secs(40));
        let mut retry = Duration::from_millis(100);
        loop {
            match self.poll(&client).await {
                Ok(()) => retry = Duration::from_millis(100),
                Err(err) => {
                    tracing::debug!(producer = %self.producer, error = %err, "feed unavailable; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn cursor(&self) -> anyhow::Result<i64> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM feed_cursors WHERE producer = $1")
                .bind(&self.producer)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map_or(0, |(p,)| p))
    }

    /// One long poll and the handling of what it brought.
    async fn poll(&self, client: &crate::client::Client) -> anyhow::Result<()> {
        let instances = self.directory.instances(&self.producer);
        anyhow::ensure!(!instances.is_empty(), "no instance of {}", self.producer);
        let instance = &instances[rand_index(instances.len())];
        let cursor = self.cursor().await?;
        let url = format!(
            "{}/internal/events?after={cursor}&limit=200&wait=20s",
            instance.address
        );
        let span = if trace::exporting() {
            tracing::info_span!(
                "feed fetch",
                otel.name = %format_args!("feed fetch {}", self.producer),
                otel.kind = "client",
                peer.service = %self.producer,
                server.address = %instance.address,
            )
        } else {
            tracing::Span::none()
        };
        let mut traced = axum::http::HeaderMap::new();
        trace::inject_headers(&span, &mut traced);
        let page: FeedPage = async {
            client
                .get(url)
                .headers(traced)
                .send()
                .await?
                .error_for_status()?
                .json()
        }
        .instrument(span)
        .await?;
        metrics::gauge!("events_consumer_lag", "consumer" => self.name.clone(), "producer" => self.producer.clone())
            .set((page.last_position - page.events.last().map_or(cursor, |e| e.position)) as f64);
        for entry in page.events {
            self.deliver(Some(entry.position), Some(entry.position), &entry.event)
                .await?;
        }
        Ok(())
    }

    async fn run_nats(&self, context: async_nats::jetstream::Context) {
        let mut retry = Duration::from_millis(100);
        loop {
            match self.pull_nats(&context).await {
                Ok(()) => retry = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(producer = %self.producer, error = format!("{err:#}"), "JetStream unavailable; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Fetches batches until an error; each message is acked only after the
    /// transaction that handled it committed.
    async fn pull_nats(&self, context: &async_nats::jetstream::Context) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let consumer = super::nats::ensure_consumer(context, &self.producer, &self.name).await?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
        let mut handled: u64 = 0;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("message: {e}"))?;
            let position = message
                .headers
                .as_ref()
                .and_then(|h| h.get(super::nats::POSITION_HEADER))
                .and_then(|p| p.as_str().parse::<i64>().ok());
            match serde_json::from_slice::<Envelope>(&message.payload) {
                Ok(event) => self.deliver(None, position, &event).await?,
                Err(err) => {
                    tracing::error!(error = %err, "dropping a message that is not a CloudEvent")
                }
            }
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            handled += 1;
            if handled.is_multiple_of(100)
                && let Ok(info) = consumer.clone().info().await
            {
                metrics::gauge!("events_consumer_lag", "consumer" => self.name.clone(), "producer" => self.producer.clone())
                    .set(info.num_pending as f64);
            }
        }
        anyhow::bail!("the message stream ended")
    }

    /// Handles one event with retries; afterwards the feed cursor (`cursor`:
    /// the event's position, if it came from the feed) is past it.
    async fn deliver(
        &self,
        cursor: Option<i64>,
        position: Option<i64>,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        if !self.handler.wants(&event.kind) {
            if let Some(position) = cursor {
                let mut tx = self.db.begin().await?;
                advance(&mut tx, &self.producer, position).await?;
                tx.commit().await?;
            }
            return Ok(());
        }
        // A child of the span that appended the event, in the producing
        // request's trace.
        let span = trace::with_remote_parent(event.traceparent.as_deref(), || {
            tracing::info_span!(
                "consume",
                otel.name = %format_args!("consume {}", event.kind),
                otel.kind = "consumer",
                event.id = %event.id,
                event.type = %event.kind,
                consumer = %self.name,
            )
        });
        self.deliver_wanted(cursor, position, event)
            .instrument(span)
            .await
    }

    async fn deliver_wanted(
        &self,
        cursor: Option<i64>,
        position: Option<i64>,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.handle_once(cursor, position, event).await {
                Ok(handled) => {
                    if handled {
                        metrics::counter!("events_handled_total", "consumer" => self.name.clone(), "type" => event.kind.clone())
                            .increment(1);
                        self.handler.after_commit(event).await;
                    }
                    return Ok(());
                }
                Err(err) if attempt < self.max_attempts => {
                    tracing::warn!(event_id = %event.id, event_type = %event.kind, attempt, error = format!("{err:#}"), "handling failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    tracing::error!(event_id = %event.id, event_type = %event.kind, attempts = attempt, error = format!("{err:#}"), "event moved to the dead letters");
                    self.dead_letter(cursor, event, &format!("{err:#}"), attempt)
                        .await?;
                    metrics::counter!("events_dead_lettered_total", "consumer" => self.name.clone(), "type" => event.kind.clone())
                        .increment(1);
                    return Ok(());
                }
            }
        }
    }

    /// Effect, inbox record and cursor in one transaction; false if the
    /// event had been handled before (a redelivery).
    async fn handle_once(
        &self,
        cursor: Option<i64>,
        position: Option<i64>,
        event: &Envelope,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let seen: Option<(String,)> =
            sqlx::query_as("SELECT event_id FROM inbox WHERE event_id = $1")
                .bind(&event.id)
                .fetch_optional(&mut *tx)
                .await?;
        if seen.is_none() {
            self.handler.handle_at(&mut tx, event, position).await?;
            sqlx::query("INSERT INTO inbox (event_id, handled_at) VALUES ($1, $2)")
                .bind(&event.id)
                .bind(clock::now())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(position) = cursor {
            advance(&mut tx, &self.producer, position).await?;
        }
        tx.commit().await?;
        Ok(seen.is_none())
    }

    async fn dead_letter(
        &self,
        cursor: Option<i64>,
        event: &Envelope,
        error: &str,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO dead_letters (event_id, producer, event_type, envelope, error, attempts, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&self.producer)
        .bind(&event.kind)
        .bind(serde_json::to_string(event)?)
        .bind(error)
        .bind(i64::from(attempts))
        .bind(clock::now())
        .execute(&mut *tx)
        .await?;
        self.handler.dead_lettered(&mut tx, event, error).await?;
        if let Some(position) = cursor {
            advance(&mut tx, &self.producer, position).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn advance(tx: &mut Tx, producer: &str, position: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO feed_cursors (producer, position, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (producer) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
    )
    .bind(producer)
    .bind(position)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn rand_index(len: usize) -> usize {
    rand::Rng::gen_range(&mut rand::thread_rng(), 0..len.max(1))
}
