//! posting on a random port with a fresh database and a token issuer.

use dure_chassis::auth::Role;
use dure_chassis::testing::{Backend, TestDatabase, TestServer, TestUser, TokenIssuer};
use reqwest::{Client, Response};
use serde_json::{Value, json};

pub struct TestApp {
    pub server: TestServer,
    pub client: Client,
    pub issuer: TokenIssuer,
    _database: TestDatabase,
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    let database = TestDatabase::create(backend, "posting").await;
    let issuer = TokenIssuer::start().await;
    let config = dure_chassis::service::Config::new(
        database.url.parse().unwrap(),
        Some(issuer.jwks_url.clone()),
        (),
    );
    let server = TestServer::service::<dure_posting::Board>(config).await;
    TestApp {
        server,
        client: Client::new(),
        issuer,
        _database: database,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn user(&self, name: &str) -> TestUser {
        TestUser::new(&self.issuer, name, Role::User)
    }

    pub fn admin(&self) -> TestUser {
        TestUser::new(&self.issuer, "Admin", Role::Admin)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(&user.token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// Publishes a posting as `user`; returns it.
    pub async fn publish(&self, user: &TestUser, title: &str) -> Value {
        let response = self
            .send(
                reqwest::Method::POST,
                "/api/postings",
                Some(user),
                Some(&json!({"title": title, "body": "text"})),
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    pub async fn comment(&self, user: &TestUser, posting_id: &str, body: &str) -> Response {
        self.send(
            reqwest::Method::POST,
            &format!("/api/postings/{posting_id}/comments"),
            Some(user),
            Some(&json!({"body": body})),
        )
        .await
    }
}
