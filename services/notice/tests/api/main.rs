//! notice over HTTP against a running service, on SQLite always and on
//! Postgres when `DURE_TEST_POSTGRES_URL` is set.

use dure_chassis::auth::Role;
use dure_chassis::testing::{
    Backend, TestDatabase, TestServer, TestUser, TokenIssuer, assert_problem,
};
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};

struct TestApp {
    server: TestServer,
    client: Client,
    issuer: TokenIssuer,
    _database: TestDatabase,
}

async fn spawn_app(backend: &Backend) -> TestApp {
    let database = TestDatabase::create(backend, "notice").await;
    let issuer = TokenIssuer::start().await;
    let config = dure_chassis::service::Config::new(
        database.url.parse().unwrap(),
        Some(issuer.jwks_url.clone()),
        (),
    );
    let server = TestServer::service::<dure_notice::Notices>(config).await;
    TestApp {
        server,
        client: Client::new(),
        issuer,
        _database: database,
    }
}

impl TestApp {
    async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.server.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(&user.token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.send(Method::GET, path, None, None)
            .await
            .json()
            .await
            .unwrap()
    }

    async fn publish(&self, admin: &TestUser, title: &str, pinned: bool) -> Value {
        let body = json!({"title": title, "body": "body", "pinned": pinned});
        let response = self
            .send(Method::POST, "/api/notice", Some(admin), Some(&body))
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }
}

dure_chassis::on_both_backends!(
    admins_publish_and_everyone_reads,
    non_admins_cannot_write_and_nothing_changes,
    pinned_first_then_newest_across_pages,
    admins_edit_and_delete,
    bad_input_is_4xx,
);

async fn admins_publish_and_everyone_reads(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = TestUser::new(&app.issuer, "Admin", Role::Admin);
    let notice = app.publish(&admin, "Maintenance tonight", false).await;
    assert_eq!(notice["title"], "Maintenance tonight");
    assert_eq!(notice["pinned"], false);
    let keys: Vec<&String> = notice.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    let id = notice["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/notice/{id}")).await, notice);
    assert_eq!(app.get("/api/notice").await["items"][0], notice);
    // pinned defaults to false, and may be set.
    assert_eq!(app.publish(&admin, "Rules", true).await["pinned"], true);
}

async fn non_admins_cannot_write_and_nothing_changes(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = TestUser::new(&app.issuer, "Admin", Role::Admin);
    let user = TestUser::new(&app.issuer, "Ann", Role::User);
    let notice = app.publish(&admin, "Official", true).await;
    let path = format!("/api/notice/{}", notice["id"].as_str().unwrap());
    let body = json!({"title": "Fake", "body": "news"});
    assert_problem(
        app.send(Method::POST, "/api/notice", Some(&user), Some(&body))
            .await,
        403,
    )
    .await;
    assert_problem(
        app.send(Method::POST, "/api/notice", None, Some(&body))
            .await,
        401,
    )
    .await;
    assert_problem(
        app.send(Method::PATCH, &path, Some(&user), Some(&body))
            .await,
        403,
    )
    .await;
    assert_problem(
        app.send(Method::DELETE, &path, Some(&user), None).await,
        403,
    )
    .await;
    // A user token claiming admin under another key is not an admin.
    let forger = TokenIssuer::start().await;
    let forged = TestUser::new(&forger, "Eve", Role::Admin);
    assert_problem(
        app.send(Method::POST, "/api/notice", Some(&forged), Some(&body))
            .await,
        401,
    )
    .await;
    let list = app.get("/api/notice").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0], notice);
}

async fn pinned_first_then_newest_across_pages(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = TestUser::new(&app.issuer, "Admin", Role::Admin);
    for (title, pinned) in [
        ("old", false),
        ("pinned old", true),
        ("mid", false),
        ("pinned new", true),
        ("new", false),
    ] {
        app.publish(&admin, title, pinned).await;
    }
    let mut titles = Vec::new();
    let mut path = "/api/notice?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        titles.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["title"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/notice?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(titles, ["pinned new", "pinned old", "new", "mid", "old"]);
}

async fn admins_edit_and_delete(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = TestUser::new(&app.issuer, "Admin", Role::Admin);
    let notice = app.publish(&admin, "Draft", false).await;
    let path = format!("/api/notice/{}", notice["id"].as_str().unwrap());
    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(&json!({"pinned": true, "title": "Final"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!(
        (edited["title"].as_str(), edited["pinned"].as_bool()),
        (Some("Final"), Some(true))
    );
    assert_eq!(edited["body"], "body");
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&admin), None)
            .await
            .status(),
        204
    );
    assert_problem(app.send(Method::GET, &path, None, None).await, 404).await;
    assert_problem(
        app.send(Method::DELETE, &path, Some(&admin), None).await,
        404,
    )
    .await;
    assert_problem(
        app.send(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(&json!({"title": "x"})),
        )
        .await,
        404,
    )
    .await;
}

async fn bad_input_is_4xx(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = TestUser::new(&app.issuer, "Admin", Role::Admin);
    for body in [
        json!({"title": "", "body": "b"}),
        json!({"title": "t", "body": "x".repeat(20_001)}),
    ] {
        assert_problem(
            app.send(Method::POST, "/api/notice", Some(&admin), Some(&body))
                .await,
            422,
        )
        .await;
    }
    for body in [
        json!({"title": "t"}),
        json!({"title": "t", "body": "b", "pinned": "yes"}),
        json!({"title": "t", "body": "b", "x": 1}),
    ] {
        assert_problem(
            app.send(Method::POST, "/api/notice", Some(&admin), Some(&body))
                .await,
            400,
        )
        .await;
    }
    for path in [
        "/api/notice/nope",
        "/api/notice/01a20000-0000-7000-8000-000000000000",
    ] {
        assert_problem(app.send(Method::GET, path, None, None).await, 404).await;
    }
    assert_problem(
        app.send(Method::GET, "/api/notice?cursor=zzz", None, None)
            .await,
        400,
    )
    .await;
    assert_problem(
        app.send(Method::GET, "/api/notice?limit=0", None, None)
            .await,
        422,
    )
    .await;
    assert_eq!(app.get("/api/notice").await["items"], json!([]));
}
