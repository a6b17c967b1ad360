//! Test support for services (feature `testing`): a fresh database per test
//! on SQLite or Postgres, a macro that runs a test on both, and an identity
//! stand-in that signs tokens and serves their JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;

use crate::auth::{Claims, ISSUER, Role};

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// Postgres when `DURE_TEST_POSTGRES_URL` names a server; each test gets
    /// a database of its own on it.
    pub fn postgres() -> Option<Self> {
        match std::env::var("DURE_TEST_POSTGRES_URL") {
            Ok(url) if !url.trim().is_empty() => Some(Self::Postgres(url)),
            _ => {
                eprintln!("DURE_TEST_POSTGRES_URL is not set: skipping the Postgres variant");
                None
            }
        }
    }
}

/// A database that exists for one test and is removed after it, passed or
/// failed.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres(String),
}

impl TestDatabase {
    pub async fn create(backend: &Backend, service: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("dure-{service}-test-{unique}"));
                let url = format!("sqlite://{}", dir.join(format!("{service}.db")).display());
                Self {
                    url,
                    cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres(server) => {
                let url = format!("{}/dure_test_{unique}", server.trim_end_matches('/'));
                crate::db::create_postgres_database(&url)
                    .await
                    .expect("DURE_TEST_POSTGRES_URL is set but its server cannot be used");
                Self {
                    url: url.clone(),
                    cleanup: Cleanup::Postgres(url),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres(url) => {
                let url = url.clone();
                // Drop may run outside a runtime: use a thread and one of its own.
                let _ = std::thread::spawn(move || {
                    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        let _ = runtime.block_on(crate::db::drop_postgres_database(&url));
                    }
                })
                .join();
            }
        }
    }
}

/// Runs each listed `async fn name(Backend)` as a test on SQLite, and again
/// on Postgres when it is configured.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::testing::Backend::postgres() {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Stands in for identity: signs tokens with a key of its own and serves
/// the matching JWKS on a random port.
#[derive(Debug)]
pub struct TokenIssuer {
    pub jwks_url: String,
    kid: String,
    seed: [u8; 32],
}

impl TokenIssuer {
    pub async fn start() -> Self {
        let seed: [u8; 32] = rand::random();
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let kid = uuid::Uuid::new_v4().to_string();
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": kid, "x": URL_SAFE_NO_PAD.encode(public)
        }]});
        let app = axum::Router::new().route(
            "/api/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let jwks_url = format!(
            "http://{}/api/.well-known/jwks.json",
            listener.local_addr().expect("bound")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            jwks_url,
            kid,
            seed,
        }
    }

    /// A valid access token for user `sub` named `name` with `role`.
    pub fn token(&self, sub: &str, name: &str, role: Role) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.sign(&Claims {
            sub: sub.into(),
            name: name.into(),
            role,
            exp: now + 900,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            iss: ISSUER.into(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .expect("signing works")
    }
}

/// A user as tests need one: an id and a token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub name: String,
    pub token: String,
}

impl TestUser {
    pub fn new(issuer: &TokenIssuer, name: &str, role: Role) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        let token = issuer.token(&id, name, role);
        Self {
            id,
            name: name.into(),
            token,
        }
    }
}

/// A service running in the test process on a random port; stopped
/// gracefully (or, if the test panicked, aborted) when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Binds a port, starts `run(listener, shutdown)` and waits for `/readyz`.
    /// Service `S` with `config`, on a free port.
    pub async fn service<S: crate::service::Service>(
        config: crate::service::Config<S::Settings>,
    ) -> Self {
        Self::spawn(move |listener, shutdown| {
            crate::service::run::<S>(config, crate::service::Listen::tcp(listener), shutdown)
        })
        .await
    }

    pub async fn spawn<F, R>(run: R) -> Self
    where
        R: FnOnce(
            tokio::net::TcpListener,
            std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        ) -> F,
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        crate::telemetry::init_test_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(run(listener, shutdown));
        let server = Self {
            address,
            stop: Some(stop),
            task: Some(task),
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(response) = client.get(server.url("/readyz")).send().await
                && response.status().is_success()
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the service did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Stops gracefully and returns what the service's run returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Asserts a problem+json answer with `status` and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "unexpected status for {}",
        response.url()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, dure_contracts::problem::PROBLEM_JSON);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:dure:problem:"))
    );
    body
}
