//! The `nats` transport: outbox rows relayed to NATS JetStream, consumed
//! with durable pull consumers.
//!
//! Each producing service has a stream `DURE_<SERVICE>` on subjects
//! `dure.<service>.<event type>`. The relay publishes sequenced rows in
//! position order with `Nats-Msg-Id` = event id (the broker drops a
//! duplicate within its window) and marks a row published only after the
//! publish is acknowledged. Consumers ack a message only after the
//! transaction that handled it committed; the inbox absorbs redeliveries.
//! Streams and consumers are created when missing.

use crate::clock;
use crate::db::Db;
use crate::telemetry::trace;
use async_nats::jetstream::{self, consumer::pull, stream};
use std::time::Duration;
use tracing::Instrument;

/// Connects without waiting: if the broker is down, the client keeps trying
/// in the background and the relay and consumers retry meanwhile.
/// The event's position in its producer's feed, so that a consumer on
/// either transport knows how far it has applied each producer.
pub const POSITION_HEADER: &str = "Dure-Position";

pub async fn connect(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await?;
    Ok(jetstream::new(client))
}

pub fn stream_name(service: &str) -> String {
    format!("DURE_{}", service.to_uppercase().replace(['-', '.'], "_"))
}

pub fn subject(service: &str, event_type: &str) -> String {
    format!("dure.{service}.{event_type}")
}

pub async fn ensure_stream(
    context: &jetstream::Context,
    service: &str,
) -> anyhow::Result<stream::Stream> {
    let stream = context
        .get_or_create_stream(stream::Config {
            name: stream_name(service),
            subjects: vec![format!("dure.{service}.>")],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    Ok(stream)
}

/// The durable pull consumer `consumer` has on `producer`'s stream.
pub async fn ensure_consumer(
    context: &jetstream::Context,
    producer: &str,
    consumer: &str,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = ensure_stream(context, producer).await?;
    let consumer = stream
        .get_or_create_consumer(
            consumer,
            pull::Config {
                durable_name: Some(consumer.to_owned()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// Publishes sequenced, unpublished outbox rows in position order, forever;
/// woken by the sequencer through `positions`.
pub async fn relay(
    db: Db,
    service: String,
    context: jetstream::Context,
    mut positions: tokio::sync::watch::Receiver<i64>,
) {
    let mut retry = Duration::from_millis(100);
    let mut stream_ready = false;
    loop {
        let outcome = async {
            if !stream_ready {
                ensure_stream(&context, &service).await?;
                stream_ready = true;
            }
            relay_once(&db, &service, &context).await
        }
        .await;
        match outcome {
            Ok(0) => {
                retry = Duration::from_millis(100);
                positions.borrow_and_update();
                tokio::select! {
                    _ = positions.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => retry = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "relaying the outbox to NATS failed; retrying"
                );
                stream_ready = false;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn relay_once(db: &Db, service: &str, context: &jetstream::Context) -> anyhow::Result<usize> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT id, event_type, envelope, position FROM outbox \
         WHERE position IS NOT NULL AND published_at IS NULL ORDER BY position LIMIT 100",
    )
    .fetch_all(db.pool())
    .await?;
    // Send them all, then collect the acknowledgements: one round trip per
    // batch rather than per event.
    let mut acks = Vec::with_capacity(rows.len());
    for (id, event_type, envelope, position) in &rows {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(POSITION_HEADER, position.to_string().as_str());
        let span = publish_span(service, event_type, envelope);
        let ack = context
            .publish_with_headers(
                subject(service, event_type),
                headers,
                envelope.clone().into(),
            )
            .instrument(span)
            .await?;
        acks.push((id, ack));
    }
    // The second await is the broker's acknowledgement: only then is an
    // event safe, and only then is its row marked. No database lock is held
    // while waiting.
    let mut acknowledged = Vec::with_capacity(acks.len());
    for (id, ack) in acks {
        ack.await?;
        acknowledged.push(id);
    }
    let now = clock::now();
    let mut tx = db.begin().await?;
    for id in acknowledged {
        sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = $1")
            .bind(id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    metrics::counter!("events_relayed_total").increment(rows.len() as u64);
    Ok(rows.len())
}

/// A span for one publish, in the trace of the request that appended the
/// event; none unless traces are exported.
fn publish_span(service: &str, event_type: &str, envelope: &str) -> tracing::Span {
    if !trace::exporting() {
        return tracing::Span::none();
    }
    let traceparent = serde_json::from_str::<dure_contracts::events::Envelope>(envelope)
        .ok()
        .and_then(|event| event.traceparent);
    trace::with_remote_parent(traceparent.as_deref(), || {
        tracing::info_span!(
            "relay publish",
            otel.name = %format_args!("publish {event_type}"),
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.destination.name = %subject(service, event_type),
        )
    })
}
