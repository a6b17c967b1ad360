//! notification over HTTP against a running service, on SQLite always and
//! on Postgres when configured. Events are handed to its handler the way
//! its consumers do, in a transaction on its database.

use dure_chassis::auth::{Revocations, Role};
use dure_chassis::db::Db;
use dure_chassis::events::Handler;
use dure_chassis::service::Config;
use dure_chassis::testing::{
    Backend, TestDatabase, TestServer, TestUser, TokenIssuer, assert_problem,
};
use dure_contracts::events::{CommentAdded, Envelope, NoticePublished, Payload, UserDeleted};
use dure_notification::handlers::NotificationEvents;
use reqwest::Client;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

struct TestApp {
    server: TestServer,
    client: Client,
    issuer: TokenIssuer,
    db: Db,
    outbox: dure_chassis::events::Outbox,
    _database: TestDatabase,
}

async fn spawn_app(backend: &Backend) -> TestApp {
    let database = TestDatabase::create(backend, "notification").await;
    let issuer = TokenIssuer::start().await;
    let url: dure_chassis::config::DatabaseUrl = database.url.parse().unwrap();
    let config = Config::new(url.clone(), Some(issuer.jwks_url.clone()), ());
    let server = TestServer::service::<dure_notification::Notifications>(config).await;
    let db = Db::connect(&url, &dure_notification::MIGRATIONS)
        .await
        .unwrap();
    let outbox = dure_chassis::events::Outbox::start("notification", db.clone(), None, None);
    TestApp {
        server,
        client: Client::new(),
        issuer,
        outbox,
        db,
        _database: database,
    }
}

fn envelope<P: Payload>(payload: &P) -> Envelope {
    Envelope {
        specversion: "1.0".into(),
        id: uuid::Uuid::now_v7().to_string(),
        source: "/dure/test".into(),
        kind: P::TYPE.into(),
        time: dure_chassis::clock::now(),
        subject: Some(payload.subject()),
        datacontenttype: "application/json".into(),
        data: serde_json::to_value(payload).unwrap(),
        traceparent: None,
    }
}

impl TestApp {
    /// What a consumer does with an event, minus the feed.
    async fn deliver<P: Payload>(&self, payload: &P) {
        let handler = NotificationEvents {
            revocations: Revocations::default(),
            news: Arc::new(tokio::sync::Notify::new()),
            participant: dure_chassis::events::erasure::Participant::new(
                "notification",
                self.outbox.clone(),
            ),
        };
        let mut tx = self.db.begin().await.unwrap();
        handler.handle(&mut tx, &envelope(payload)).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn comment_on(&self, owner: &TestUser, by: &TestUser) {
        self.deliver(&CommentAdded {
            v: 1,
            comment_id: uuid::Uuid::now_v7().to_string(),
            posting_id: uuid::Uuid::now_v7().to_string(),
            posting_title: "Hello".into(),
            posting_author_id: owner.id.clone(),
            author_id: by.id.clone(),
            author_name: by.name.clone(),
        })
        .await;
    }

    async fn list(&self, user: &TestUser, query: &str) -> Value {
        let response = self
            .client
            .get(self.server.url(&format!("/api/notifications{query}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn post(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.client
            .post(self.server.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }
}

dure_chassis::on_both_backends!(
    comments_notify_the_posting_author_only,
    notices_reach_everyone_with_read_marks_per_user,
    users_cannot_read_or_mark_others_notifications,
    the_stream_pushes_new_notifications,
    a_deleted_user_loses_their_notifications,
);

async fn comments_notify_the_posting_author_only(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = TestUser::new(&app.issuer, "Ann", Role::User);
    let bob = TestUser::new(&app.issuer, "Bob", Role::User);
    app.comment_on(&ann, &bob).await;
    app.comment_on(&ann, &ann).await; // on her own posting: no notification
    let page = app.list(&ann, "").await;
    assert_eq!(page["unread_count"], 1);
    let item = &page["items"][0];
    assert_eq!(item["kind"], "comment");
    assert_eq!(item["title"], "Bob commented on \"Hello\"");
    assert_eq!(item["read"], false);
    assert!(item["link"].as_str().unwrap().starts_with("/api/postings/"));
    assert_eq!(app.list(&bob, "").await["items"], serde_json::json!([]));
}

async fn notices_reach_everyone_with_read_marks_per_user(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = TestUser::new(&app.issuer, "Ann", Role::User);
    let bob = TestUser::new(&app.issuer, "Bob", Role::User);
    let notice_id = uuid::Uuid::now_v7().to_string();
    app.deliver(&NoticePublished {
        v: 1,
        notice_id: notice_id.clone(),
        title: "Welcome".into(),
    })
    .await;
    app.comment_on(&ann, &bob).await;
    assert_eq!(app.list(&ann, "").await["unread_count"], 2);
    assert_eq!(app.list(&bob, "").await["unread_count"], 1);

    assert_eq!(
        app.post(&ann, &format!("/api/notifications/{notice_id}/read"))
            .await
            .status(),
        204
    );
    let ann_page = app.list(&ann, "").await;
    assert_eq!(ann_page["unread_count"], 1);
    assert_eq!(
        app.list(&ann, "?unread=true").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Bob's read state is his own.
    assert_eq!(app.list(&bob, "").await["unread_count"], 1);
    assert_eq!(
        app.post(&bob, "/api/notifications/read-all").await.status(),
        204
    );
    assert_eq!(app.list(&bob, "").await["unread_count"], 0);
    assert_eq!(app.list(&ann, "").await["unread_count"], 1);
}

async fn users_cannot_read_or_mark_others_notifications(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = TestUser::new(&app.issuer, "Ann", Role::User);
    let bob = TestUser::new(&app.issuer, "Bob", Role::User);
    app.comment_on(&ann, &bob).await;
    let anns = app.list(&ann, "").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(
        app.post(&bob, &format!("/api/notifications/{anns}/read"))
            .await,
        404,
    )
    .await;
    assert_eq!(
        app.list(&ann, "").await["unread_count"],
        1,
        "Bob's attempt changed nothing"
    );
    let anonymous = app
        .client
        .get(app.server.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
    for query in ["?unread=maybe", "?limit=0", "?cursor=zz"] {
        let response = app
            .client
            .get(app.server.url(&format!("/api/notifications{query}")))
            .bearer_auth(&ann.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{query}");
    }
    assert_problem(
        app.post(&ann, "/api/notifications/not-an-id/read").await,
        404,
    )
    .await;
}

async fn the_stream_pushes_new_notifications(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = TestUser::new(&app.issuer, "Ann", Role::User);
    let bob = TestUser::new(&app.issuer, "Bob", Role::User);
    let mut stream = app
        .client
        .get(app.server.url("/api/notifications/stream"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.comment_on(&ann, &bob).await;
    let chunk = tokio::time::timeout(Duration::from_secs(3), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk).to_string();
    assert!(text.starts_with("event: notification"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let pushed: Value = serde_json::from_str(data).unwrap();
    assert_eq!(pushed["kind"], "comment");
}

async fn a_deleted_user_loses_their_notifications(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = TestUser::new(&app.issuer, "Ann", Role::User);
    let bob = TestUser::new(&app.issuer, "Bob", Role::User);
    app.comment_on(&ann, &bob).await;
    app.deliver(&UserDeleted {
        v: 1,
        user_id: ann.id.clone(),
        tokens_valid_until: dure_chassis::clock::now(),
    })
    .await;
    assert_eq!(app.list(&ann, "").await["items"], serde_json::json!([]));
    // Comments on a deleted user's postings notify nobody.
    app.comment_on(&ann, &bob).await;
    assert_eq!(app.list(&ann, "").await["items"], serde_json::json!([]));
}
