//! `spawn_app`: identity on a random port with a fresh database, plus typed
//! request helpers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::config::DatabaseUrl;
use dure_chassis::service::{Config, Listen};
pub use dure_chassis::testing::Backend;
use dure_chassis::testing::TestDatabase;
use dure_identity::Settings;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::sync::oneshot;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: Client,
    pub database_url: String,
    config: Config<Settings>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: &Backend, customise: impl FnOnce(&mut Settings)) -> TestApp {
    dure_chassis::telemetry::init_test_logging();
    let database = TestDatabase::create(backend, "identity").await;
    let database_url = database.url.clone();
    let mut config = Config::new(
        database_url.parse::<DatabaseUrl>().unwrap(),
        None,
        Settings::default(),
    );
    customise(&mut config.own);
    let mut app = TestApp {
        address: "127.0.0.1:0".parse().unwrap(),
        client: Client::new(),
        database_url,
        config,
        stop: None,
        server: None,
        _database: database,
    };
    app.start().await;
    app
}

impl TestApp {
    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.address = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let config = self.config.clone();
        self.server = Some(tokio::spawn(dure_chassis::service::run::<
            dure_identity::Identity,
        >(
            config, Listen::tcp(listener), async {
            let _ = stop_rx.await;
        }
        )));
        self.stop = Some(stop_tx);
        // Ready once /readyz answers.
        for _ in 0..200 {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("identity did not become ready");
    }

    /// Stops the service gracefully and starts it again on the same port
    /// and database.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.start().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_up(&self, username: &str) -> Response {
        self.post(
            "/api/users",
            &json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post(
            "/api/login",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Signs up and logs in; returns the token pair.
    pub async fn user_with_tokens(&self, username: &str) -> Tokens {
        assert_eq!(self.sign_up(username).await.status(), StatusCode::CREATED);
        let response = self.login(username, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn get_me(&self, access_token: &str) -> Response {
        self.client
            .get(self.url("/api/user"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch_me(&self, access_token: &str, body: &Value) -> Response {
        self.client
            .patch(self.url("/api/user"))
            .bearer_auth(access_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post(
            "/api/token/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// The service's own signing key, read from its database, to forge tokens
    /// that are correctly signed but otherwise wrong (expired, …).
    pub async fn sign_with_service_key(&self, kid_claims: &Value) -> String {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database_url).await.unwrap();
        let (kid, seed): (String, Vec<u8>) = sqlx::query_as(
            "SELECT kid, private_key FROM signing_keys ORDER BY generation DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid);
        jsonwebtoken::encode(
            &header,
            kid_claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

pub const PASSWORD: &str = "correct horse battery";

/// Asserts a problem+json answer with `status`; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    dure_chassis::testing::assert_problem(response, status.as_u16()).await
}

/// The payload segment of a JWT, decoded.
pub fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
