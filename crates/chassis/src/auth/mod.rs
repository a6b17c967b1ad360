//! Who is calling: access-token verification for every service.
//!
//! identity signs access tokens with Ed25519 (EdDSA) and publishes the public
//! keys as a JWKS. A [`TokenVerifier`] checks a token's signature against
//! those keys (by the `kid` in its header), its issuer and its expiry, and
//! yields [`Claims`]. Keys come either from identity's JWKS over HTTP (every
//! other service; cached, and refetched when a token names an unknown `kid`,
//! at most once per [`REFETCH_INTERVAL`]) or are handed over directly
//! (identity itself).
//!
//! Handlers take [`Claims`] as an extractor; the verifier must be in the
//! request extensions (`Extension(Arc<TokenVerifier>)`).
//!
//! [`revocations`]: the users deleted since their tokens were issued, whose
//! tokens every service refuses.

pub mod revocations;

pub use revocations::Revocations;
#[cfg(feature = "storage")]
pub use revocations::RevokeDeletedUsers;

use crate::discovery::Directory;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_contracts::jwks::Jwks;
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Where a service gets the keys to check tokens with.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// identity's JWKS URL [default: found through discovery]
    #[arg(long, env = "DURE_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,
}

impl AuthArgs {
    pub fn resolve(
        &self,
        file: &crate::config::ConfigFile,
    ) -> Result<Option<String>, crate::config::ConfigError> {
        file.layer_opt("jwks_url", self.jwks_url.clone())
    }
}

/// A verifier with keys from `jwks_url` if given, else from whichever
/// identity instance `directory` knows.
pub fn verifier(jwks_url: Option<&str>, directory: &Directory) -> TokenVerifier {
    match jwks_url {
        Some(url) => TokenVerifier::from_jwks_url(url),
        None => TokenVerifier::from_discovery(directory.clone(), "identity"),
    }
}

/// The `iss` of every dure access token.
pub const ISSUER: &str = "dure-identity";

/// Unknown `kid`s never make a service fetch the JWKS more often than this.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// What a user may do beyond their own content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The verified claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's display name when the token was issued.
    pub name: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
}

impl Claims {
    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role == role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role",
                role.as_str()
            )))
        }
    }
}

/// Loads the keys a verifier trusts, `(kid, Ed25519 public key)`.
pub type KeyLoader =
    Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<Vec<(String, [u8; 32])>>> + Send + Sync>;

/// Where a verifier's keys come from.
enum KeySource {
    /// Keys handed over at construction.
    Fixed,
    /// Keys loaded again on an unknown `kid` (identity, from its database,
    /// so that a key another replica rotated in is known at once).
    Loader {
        load: KeyLoader,
        last_fetch: Mutex<Option<Instant>>,
    },
    /// identity's JWKS, fetched over HTTP.
    Jwks {
        url: JwksLocation,
        client: crate::client::Client,
        last_fetch: Mutex<Option<Instant>>,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed => f.write_str("Fixed"),
            Self::Loader { .. } => f.write_str("Loader"),
            Self::Jwks { url, .. } => f.debug_struct("Jwks").field("url", url).finish(),
        }
    }
}

/// Where the JWKS is.
#[derive(Debug)]
enum JwksLocation {
    Fixed(String),
    /// At whichever instance of the service discovery knows now.
    Discovered {
        directory: Directory,
        service: String,
    },
}

impl JwksLocation {
    /// Every URL the keys may be fetched from, to try in turn.
    fn urls(&self) -> Vec<String> {
        match self {
            Self::Fixed(url) => vec![url.clone()],
            Self::Discovered { directory, service } => directory
                .instances(service)
                .iter()
                .map(|instance| format!("{}{JWKS_PATH}", instance.address.trim_end_matches('/')))
                .collect(),
        }
    }
}

/// Where identity publishes its keys.
pub const JWKS_PATH: &str = "/api/.well-known/jwks.json";

/// Verifies access tokens; cheap to share behind an `Arc`.
pub struct TokenVerifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    revocations: Option<Revocations>,
    source: KeySource,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self
            .keys
            .read()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("TokenVerifier")
            .field("kids", &kids)
            .field("source", &self.source)
            .finish()
    }
}

fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation.leeway = 5;
    validation
}

impl TokenVerifier {
    /// A verifier for a fixed set of keys: `(kid, Ed25519 public key)`.
    pub fn with_keys(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        let keys = keys
            .into_iter()
            .map(|(kid, public)| (kid, DecodingKey::from_ed_der(&public)))
            .collect();
        Self {
            keys: RwLock::new(keys),
            revocations: None,
            source: KeySource::Fixed,
            validation: validation(),
        }
    }

    /// A verifier for `keys` that calls `load` for the current set when it
    /// meets a `kid` it does not know (at most once per [`REFETCH_INTERVAL`]).
    pub fn with_loader(
        keys: impl IntoIterator<Item = (String, [u8; 32])>,
        load: KeyLoader,
    ) -> Self {
        Self {
            source: KeySource::Loader {
                load,
                last_fetch: Mutex::new(None),
            },
            ..Self::with_keys(keys)
        }
    }

    /// A verifier that fetches keys from a JWKS URL (identity's
    /// `/api/.well-known/jwks.json`) when it meets a `kid` it does not know.
    pub fn from_jwks_url(url: impl Into<String>) -> Self {
        Self::from_location(JwksLocation::Fixed(url.into()))
    }

    /// A verifier that fetches keys from the JWKS of `service` (identity),
    /// wherever discovery finds it.
    pub fn from_discovery(directory: Directory, service: impl Into<String>) -> Self {
        Self::from_location(JwksLocation::Discovered {
            directory,
            service: service.into(),
        })
    }

    fn from_location(url: JwksLocation) -> Self {
        let client = crate::client::Client::new(Duration::from_secs(5));
        Self {
            keys: RwLock::new(HashMap::new()),
            revocations: None,
            source: KeySource::Jwks {
                url,
                client,
                last_fetch: Mutex::new(None),
            },
            validation: validation(),
        }
    }

    /// Also refuses tokens of users in `revocations` (deleted accounts).
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Verifies a compact JWS and returns its claims, or 401 saying why.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the access token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthorized("the access token is not signed with EdDSA"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the access token names no key"))?;
        if self.key(&kid).is_none() {
            self.refresh(&kid).await;
        }
        let key = self
            .key(&kid)
            .ok_or_else(|| unauthorized("the access token is signed by an unknown key"))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::ExpiredSignature => unauthorized("the access token has expired"),
                    ErrorKind::InvalidSignature => {
                        unauthorized("the access token signature is invalid")
                    }
                    _ => unauthorized("the access token is invalid"),
                }
            })?;
        if self
            .revocations
            .as_ref()
            .is_some_and(|r| r.is_revoked(&data.claims.sub))
        {
            return Err(unauthorized("the account of this token has been deleted"));
        }
        Ok(data.claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Refetches the JWKS, unless it was fetched moments ago: a flood of
    /// tokens with made-up `kid`s must not become a flood of fetches.
    async fn refresh(&self, kid: &str) {
        let (url, client, last_fetch) = match &self.source {
            KeySource::Fixed => return,
            KeySource::Loader { load, last_fetch } => {
                let mut last = last_fetch.lock().await;
                if self.key(kid).is_some() || last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL)
                {
                    return;
                }
                *last = Some(Instant::now());
                match load().await {
                    Ok(loaded) => {
                        let loaded = loaded
                            .into_iter()
                            .map(|(kid, public)| (kid, DecodingKey::from_ed_der(&public)))
                            .collect();
                        if let Ok(mut keys) = self.keys.write() {
                            *keys = loaded;
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot load the signing keys"),
                }
                return;
            }
            KeySource::Jwks {
                url,
                client,
                last_fetch,
            } => (url, client, last_fetch),
        };
        let mut last = last_fetch.lock().await;
        if self.key(kid).is_some() || last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let urls = url.urls();
        if urls.is_empty() {
            tracing::warn!("no instance to fetch the signing keys from");
        }
        // Any instance will do; a dead one must not stand for all of them.
        for url in urls {
            match fetch_jwks(client, &url).await {
                Ok(fetched) => {
                    if let Ok(mut keys) = self.keys.write() {
                        *keys = fetched;
                    }
                    return;
                }
                Err(err) => tracing::warn!(%url, error = %err, "cannot fetch the signing keys"),
            }
        }
    }
}

async fn fetch_jwks(
    client: &crate::client::Client,
    url: &str,
) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let jwks: Jwks = client.get(url).send().await?.error_for_status()?.json()?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            continue;
        }
        // The verifier reads exactly 32 bytes; anything else is not a key.
        match URL_SAFE_NO_PAD.decode(&jwk.x) {
            Ok(public) if public.len() == 32 => {
                keys.insert(jwk.kid, DecodingKey::from_ed_der(&public));
            }
            _ => tracing::warn!(kid = %jwk.kid, "ignoring a malformed key in the JWKS"),
        }
    }
    Ok(keys)
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_owned())
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(unauthorized(
            "expected Authorization: Bearer <access token>",
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?
            .ok_or_else(|| unauthorized("this needs a bearer access token"))?
            .to_owned();
        let verifier = parts
            .extensions
            .get::<Arc<TokenVerifier>>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "no TokenVerifier in the request extensions"
                ))
            })?;
        verifier.verify(&token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use jsonwebtoken::{EncodingKey, Header};

    const PKCS8_ED25519_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];

    fn key_pair(seed: u8) -> (EncodingKey, [u8; 32]) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&[seed; 32]);
        (
            EncodingKey::from_ed_der(&der),
            signing.verifying_key().to_bytes(),
        )
    }

    fn claims(exp_offset: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            sub: "u1".into(),
            name: "Ann".into(),
            role: Role::User,
            exp: now + exp_offset,
            iat: now,
            jti: "j1".into(),
            iss: ISSUER.into(),
        }
    }

    fn sign(key: &EncodingKey, kid: &str, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[tokio::test]
    async fn accepts_a_good_token_and_rejects_tampering() {
        let (private, public) = key_pair(1);
        let verifier = TokenVerifier::with_keys([("k1".to_owned(), public)]);
        let token = sign(&private, "k1", &claims(60));
        assert_eq!(verifier.verify(&token).await.unwrap().name, "Ann");

        // Swap the payload for one that claims admin.
        let mut forged = claims(60);
        forged.role = Role::Admin;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(verifier.verify(&tampered).await.is_err());
    }

    #[tokio::test]
    async fn rejects_expired_foreign_and_unsigned_tokens() {
        let (private, public) = key_pair(1);
        let (other, _) = key_pair(2);
        let verifier = TokenVerifier::with_keys([("k1".to_owned(), public)]);
        assert!(
            verifier
                .verify(&sign(&private, "k1", &claims(-60)))
                .await
                .is_err()
        );
        assert!(
            verifier
                .verify(&sign(&other, "k1", &claims(60)))
                .await
                .is_err()
        );
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(60)).unwrap());
        assert!(
            verifier
                .verify(&format!("{none_header}.{payload}."))
                .await
                .is_err()
        );
    }
}
