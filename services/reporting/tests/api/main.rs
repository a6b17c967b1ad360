//! reporting over HTTP against a running service, on SQLite always and on
//! Postgres when configured. Its producers are stand-in feeds served by the
//! test, so that the test decides exactly which events exist; reporting's
//! own consumers and rebuild read them as they read real producers.

use axum::extract::{Query, State};
use dure_chassis::auth::Role;
use dure_chassis::discovery::{DiscoverySettings, Source};
use dure_chassis::events::outbox::{FeedEvent, FeedPage};
use dure_chassis::service::Config;
use dure_chassis::testing::{Backend, TestDatabase, TestServer, TestUser, TokenIssuer};
use dure_contracts::events::{
    CommentAdded, CommentDeleted, Envelope, ErasureRequested, NoticePublished, Payload,
    PostingPublished, UserRegistered,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A producer's feed, as `GET /internal/events` serves it.
#[derive(Clone, Default)]
struct Feed {
    source: String,
    events: Arc<Mutex<Vec<FeedEvent>>>,
}

#[derive(Deserialize)]
struct After {
    after: Option<i64>,
    limit: Option<usize>,
}

impl Feed {
    fn publish<P: Payload>(&self, payload: &P) -> String {
        let mut events = self.events.lock().unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let position = events.len() as i64 + 1;
        events.push(FeedEvent {
            position,
            event: Envelope {
                specversion: "1.0".into(),
                id: id.clone(),
                source: format!("/dure/{}", self.source),
                kind: P::TYPE.into(),
                time: dure_chassis::clock::now(),
                subject: Some(payload.subject()),
                datacontenttype: "application/json".into(),
                data: serde_json::to_value(payload).unwrap(),
                traceparent: None,
            },
        });
        id
    }
}

async fn serve_feed(State(feed): State<Feed>, Query(query): Query<After>) -> axum::Json<FeedPage> {
    let after = query.after.unwrap_or(0);
    let read = || {
        let events = feed.events.lock().unwrap();
        let page: Vec<FeedEvent> = events
            .iter()
            .filter(|e| e.position > after)
            .take(query.limit.unwrap_or(100))
            .cloned()
            .collect();
        (page, events.len() as i64)
    };
    let (mut page, mut last) = read();
    if page.is_empty() {
        // A short long poll, so that consumers do not spin.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (page, last) = read();
    }
    axum::Json(FeedPage {
        events: page,
        last_position: last,
    })
}

async fn start_feed(source: &str) -> (Feed, String) {
    let feed = Feed {
        source: source.into(),
        ..Feed::default()
    };
    let app = axum::Router::new()
        .route("/internal/events", axum::routing::get(serve_feed))
        .with_state(feed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (feed, address)
}

struct TestApp {
    server: TestServer,
    client: reqwest::Client,
    admin: TestUser,
    user: TestUser,
    identity: Feed,
    posting: Feed,
    notice: Feed,
    _database: TestDatabase,
}

async fn spawn_app(backend: &Backend) -> TestApp {
    let database = TestDatabase::create(backend, "reporting").await;
    let issuer = TokenIssuer::start().await;
    let (identity, identity_url) = start_feed("identity").await;
    let (posting, posting_url) = start_feed("posting").await;
    let (notice, notice_url) = start_feed("notice").await;
    let mut config = Config::new(
        database.url.parse().unwrap(),
        Some(issuer.jwks_url.clone()),
        (),
    );
    config.discovery = DiscoverySettings {
        source: Source::Static(vec![
            ("identity".into(), identity_url),
            ("posting".into(), posting_url),
            ("notice".into(), notice_url),
        ]),
        ..DiscoverySettings::default()
    };
    let server = TestServer::service::<dure_reporting::Reports>(config).await;
    TestApp {
        server,
        client: reqwest::Client::new(),
        admin: TestUser::new(&issuer, "Admin", Role::Admin),
        user: TestUser::new(&issuer, "Ann", Role::User),
        identity,
        posting,
        notice,
        _database: database,
    }
}

impl TestApp {
    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.server.url(path))
            .bearer_auth(&self.admin.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn rebuild(&self) -> reqwest::Response {
        self.client
            .post(self.server.url("/api/reports/rebuild"))
            .bearer_auth(&self.admin.token)
            .send()
            .await
            .unwrap()
    }

    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Two users; Ann posts twice, Bob comments three times (one deleted).
    fn community(&self) -> (String, String) {
        let (ann, bob) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        for (id, name) in [(&ann, "ann"), (&bob, "bob")] {
            self.identity.publish(&UserRegistered {
                v: 1,
                user_id: id.clone(),
                username: name.into(),
                display_name: name.into(),
            });
        }
        let mut postings = Vec::new();
        for title in ["One", "Two"] {
            let id = uuid::Uuid::now_v7().to_string();
            self.posting.publish(&PostingPublished {
                v: 1,
                posting_id: id.clone(),
                author_id: ann.clone(),
                title: title.into(),
            });
            postings.push(id);
        }
        let mut comments = Vec::new();
        for _ in 0..3 {
            let id = uuid::Uuid::now_v7().to_string();
            self.posting.publish(&CommentAdded {
                v: 1,
                comment_id: id.clone(),
                posting_id: postings[0].clone(),
                posting_title: "One".into(),
                posting_author_id: ann.clone(),
                author_id: bob.clone(),
                author_name: "bob".into(),
            });
            comments.push(id);
        }
        self.posting.publish(&CommentDeleted {
            v: 1,
            comment_id: comments[0].clone(),
            posting_id: postings[0].clone(),
        });
        self.notice.publish(&NoticePublished {
            v: 1,
            notice_id: uuid::Uuid::now_v7().to_string(),
            title: "Hello".into(),
        });
        (ann, bob)
    }
}

dure_chassis::on_both_backends!(
    reports_follow_the_producers_and_a_rebuild_equals_them,
    an_erased_user_is_anonymised_once_and_confirmed_every_time,
    reports_are_for_admins_only,
);

async fn reports_follow_the_producers_and_a_rebuild_equals_them(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, bob) = app.community();
    let summary = app
        .until("/api/reports/summary", |s| {
            s["as_of"] == json!({"identity": 2, "notice": 1, "posting": 6})
        })
        .await;
    assert_eq!(summary["users"], 2, "{summary}");
    assert_eq!(summary["postings"], 2, "{summary}");
    assert_eq!(
        summary["as_of"],
        json!({"identity": 2, "notice": 1, "posting": 6}),
        "{summary}"
    );
    let top = app.get("/api/reports/top-authors").await;
    assert_eq!(
        top["items"],
        json!([
            {"user_id": ann, "display_name": "ann", "postings": 2, "comments": 0},
            {"user_id": bob, "display_name": "bob", "postings": 0, "comments": 2},
        ]),
        "{top}"
    );
    let activity = app.get("/api/reports/activity?bucket=hour").await;
    let last = activity["buckets"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["signups"], &last["postings"], &last["comments"]),
        (&json!(2), &json!(2), &json!(2)),
        "{activity}"
    );

    let before = json!([
        app.get("/api/reports/top-authors").await["items"],
        activity["buckets"]
    ]);
    let response = app.rebuild().await;
    assert_eq!(response.status(), 202);
    let generation = response.json::<Value>().await.unwrap()["generation"].clone();
    app.until("/api/reports/rebuild", |s| {
        s["state"] == "idle" && s["live_generation"] == generation
    })
    .await;
    let summary_after = app.get("/api/reports/summary").await;
    assert_eq!(summary_after["generation"], generation);
    for key in ["users", "postings", "comments", "notices", "as_of"] {
        assert_eq!(summary_after[key], summary[key], "{key}");
    }
    let after = json!([
        app.get("/api/reports/top-authors").await["items"],
        app.get("/api/reports/activity?bucket=hour").await["buckets"]
    ]);
    assert_eq!(after, before);
    app.server.stop().await.unwrap();
}

async fn an_erased_user_is_anonymised_once_and_confirmed_every_time(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, _) = app.community();
    for attempt in 1..=2 {
        app.identity.publish(&ErasureRequested {
            v: 1,
            user_id: ann.clone(),
            attempt,
            services: vec!["reporting".into()],
        });
    }
    let top = app
        .until("/api/reports/top-authors", |t| {
            t["items"][0]["display_name"] == "(deleted user)" && t["items"][0]["postings"] == 2
        })
        .await;
    assert_eq!(top["items"][0]["user_id"], ann);
    assert_eq!(top["items"][0]["postings"], 2, "the postings still count");
    // Both commands answered, the erasure applied once: reporting's own feed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let replies = loop {
        let page: Value = app
            .client
            .get(app.server.url("/internal/events?after=0&limit=100"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let replies: Vec<Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].clone())
            .filter(|e| e["type"] == "user.erasure.confirmed")
            .collect();
        if replies.len() == 2 {
            break replies;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let applied: Vec<&Value> = replies.iter().map(|r| &r["data"]["applied"]).collect();
    assert_eq!(applied, [&json!(true), &json!(false)]);
    assert!(
        replies
            .iter()
            .all(|r| r["data"]["service"] == "reporting" && r["data"]["user_id"] == ann)
    );
    app.server.stop().await.unwrap();
}

async fn reports_are_for_admins_only(backend: Backend) {
    let app = spawn_app(&backend).await;
    for path in [
        "/api/reports/summary",
        "/api/reports/activity",
        "/api/reports/top-authors",
        "/api/reports/rebuild",
    ] {
        let as_user = app
            .client
            .get(app.server.url(path))
            .bearer_auth(&app.user.token)
            .send()
            .await
            .unwrap();
        dure_chassis::testing::assert_problem(as_user, 403).await;
        let anonymous = app.client.get(app.server.url(path)).send().await.unwrap();
        dure_chassis::testing::assert_problem(anonymous, 401).await;
    }
    let rebuild = app
        .client
        .post(app.server.url("/api/reports/rebuild"))
        .bearer_auth(&app.user.token)
        .send()
        .await
        .unwrap();
    dure_chassis::testing::assert_problem(rebuild, 403).await;
    app.server.stop().await.unwrap();
}
