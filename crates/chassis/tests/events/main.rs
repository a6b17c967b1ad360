//! The event path against real databases: the sequencer's ordering under
//! concurrent writers, and a consumer's exactly-once effects, retries and
//! dead letters.

use dure_chassis::db::{Db, Migrations, Tx};
use dure_chassis::discovery::Directory;
use dure_chassis::events::{Consumer, Handler, Outbox};
use dure_chassis::testing::{Backend, TestDatabase};
use dure_contracts::events::{Envelope, Payload};
use dure_contracts::registry::{Catalog, Instance, ServiceInstances};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

static NO_MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
static NO_MIGRATIONS_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
static NONE: Migrations = Migrations {
    sqlite: &NO_MIGRATIONS_SQLITE,
    postgres: &NO_MIGRATIONS_POSTGRES,
};

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl Payload for Ping {
    const TYPE: &'static str = "test.ping";
    fn subject(&self) -> String {
        self.n.to_string()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Poison {
    n: u32,
}

impl Payload for Poison {
    const TYPE: &'static str = "test.poison";
    fn subject(&self) -> String {
        self.n.to_string()
    }
}

async fn database(backend: &Backend, name: &str) -> (TestDatabase, Db) {
    let database = TestDatabase::create(backend, name).await;
    let db = Db::connect(&database.url.parse().unwrap(), &NONE)
        .await
        .unwrap();
    dure_chassis::events::install(&db).await.unwrap();
    (database, db)
}

/// Serves `outbox`'s feed on a random port; returns its base URL.
async fn serve_feed(outbox: &Outbox) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = outbox.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn fetch(client: &reqwest::Client, feed: &str, after: i64) -> serde_json::Value {
    client
        .get(format!(
            "{feed}/internal/events?after={after}&limit=50&wait=1s"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

dure_chassis::on_both_backends!(
    positions_follow_commit_order_with_no_gaps_under_concurrent_writers,
    over_the_feed_each_event_has_one_effect_and_poison_goes_to_dead_letters,
    over_nats_each_event_has_one_effect_and_poison_goes_to_dead_letters,
);

async fn over_the_feed_each_event_has_one_effect_and_poison_goes_to_dead_letters(backend: Backend) {
    exactly_once(backend, None).await;
}

async fn over_nats_each_event_has_one_effect_and_poison_goes_to_dead_letters(backend: Backend) {
    let Ok(url) = std::env::var("DURE_TEST_NATS_URL") else {
        eprintln!("DURE_TEST_NATS_URL is not set: skipping the NATS variant");
        return;
    };
    let context = dure_chassis::events::nats::connect(&url).await.unwrap();
    // Fail fast (and loudly under CI) when the broker does not answer.
    context
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "DURE_TEST_PROBE".into(),
            subjects: vec!["dure-test-probe".into()],
            ..Default::default()
        })
        .await
        .expect("DURE_TEST_NATS_URL is set but JetStream does not answer");
    exactly_once(backend, Some(context)).await;
}

async fn positions_follow_commit_order_with_no_gaps_under_concurrent_writers(backend: Backend) {
    let (_database, db) = database(&backend, "producer").await;
    let outbox = Outbox::start("producer", db.clone(), None, None);
    let feed = serve_feed(&outbox).await;

    // A reader follows the feed while eight writers append, some holding
    // their transaction open a while, so commits land out of start order.
    let reader = tokio::spawn({
        let feed = feed.clone();
        async move {
            let client = reqwest::Client::new();
            let mut seen: Vec<(i64, u32)> = Vec::new();
            let mut after = 0;
            while seen.len() < 200 {
                let page = fetch(&client, &feed, after).await;
                for entry in page["events"].as_array().unwrap() {
                    let position = entry["position"].as_i64().unwrap();
                    assert!(position > after, "a position at or below one already seen");
                    after = position;
                    seen.push((
                        position,
                        entry["event"]["data"]["n"].as_u64().unwrap() as u32,
                    ));
                }
            }
            seen
        }
    });
    let writers: Vec<_> = (0..8u32)
        .map(|writer| {
            let (db, outbox) = (db.clone(), outbox.clone());
            tokio::spawn(async move {
                for i in 0..25u32 {
                    let mut tx = db.begin().await.unwrap();
                    outbox
                        .append(
                            &mut tx,
                            &Ping {
                                n: writer * 100 + i,
                            },
                        )
                        .await
                        .unwrap();
                    if i % 5 == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    outbox.commit(tx).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    let positions: Vec<i64> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=200).collect::<Vec<i64>>(),
        "positions are 1..=200 with no gap"
    );
    let mut payloads: Vec<u32> = seen.iter().map(|(_, n)| *n).collect();
    payloads.sort_unstable();
    payloads.dedup();
    assert_eq!(payloads.len(), 200, "every event exactly once");
}

/// Counts effects in a table of the consumer's database; fails on poison.
struct Counting;

impl Handler for Counting {
    fn wants(&self, event_type: &str) -> bool {
        event_type == Ping::TYPE || event_type == Poison::TYPE
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            anyhow::ensure!(
                event.kind != Poison::TYPE,
                "this event can never be handled"
            );
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                .bind(&event.id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    }
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.pool()).await.unwrap();
    n
}

/// 21 events, the 11th a poison, consumed over the feed (or NATS): 20
/// effects, 1 dead letter; then everything delivered again: no change.
async fn exactly_once(backend: Backend, nats: Option<async_nats::jetstream::Context>) {
    // Streams on a shared broker outlive tests: a producer name of its own.
    let producer = format!(
        "producer{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (_producer_database, producer_db) = database(&backend, "producer").await;
    let (_consumer_database, consumer_db) = database(&backend, "consumer").await;
    sqlx::query("CREATE TABLE effects (event_id TEXT PRIMARY KEY)")
        .execute(consumer_db.pool())
        .await
        .unwrap();
    let outbox = Outbox::start(&producer, producer_db.clone(), nats.clone(), None);
    let feed = serve_feed(&outbox).await;
    for n in 0..21u32 {
        let mut tx = producer_db.begin().await.unwrap();
        if n == 10 {
            outbox.append(&mut tx, &Poison { n }).await.unwrap();
        } else {
            outbox.append(&mut tx, &Ping { n }).await.unwrap();
        }
        outbox.commit(tx).await.unwrap();
    }

    let directory = Directory::fixed(Catalog {
        services: vec![ServiceInstances {
            name: producer.clone(),
            instances: vec![Instance {
                service: producer.clone(),
                instance_id: "p-1".into(),
                address: feed,
                version: String::new(),
                metadata: BTreeMap::new(),
                registered_at: String::new(),
                last_heartbeat_at: String::new(),
            }],
        }],
    });
    let consume = |name: &str| Consumer {
        name: name.into(),
        producer: producer.clone(),
        db: consumer_db.clone(),
        directory: directory.clone(),
        handler: Arc::new(Counting),
        max_attempts: 3,
        nats: nats.clone(),
    };
    let running = tokio::spawn(consume("consumer").run());
    let all_seen = async {
        loop {
            let effects = count(&consumer_db, "SELECT COUNT(*) FROM effects").await;
            let dead = count(&consumer_db, "SELECT COUNT(*) FROM dead_letters").await;
            if effects + dead == 21 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all_seen)
        .await
        .expect("the consumer got past the poison");
    running.abort();
    assert_eq!(
        count(&consumer_db, "SELECT COUNT(*) FROM effects").await,
        20
    );
    assert_eq!(
        count(&consumer_db, "SELECT COUNT(*) FROM dead_letters").await,
        1
    );

    // Everything delivered again (a consumer that lost its cursor, a new
    // durable consumer, a broker redelivering): no second effect.
    sqlx::query("UPDATE feed_cursors SET position = 0")
        .execute(consumer_db.pool())
        .await
        .unwrap();
    let running = tokio::spawn(consume("consumer-again").run());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    running.abort();
    assert_eq!(
        count(&consumer_db, "SELECT COUNT(*) FROM effects").await,
        20
    );
    assert_eq!(
        count(&consumer_db, "SELECT COUNT(*) FROM dead_letters").await,
        1
    );
}
