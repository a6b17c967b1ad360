//! identity's Ed25519 signing keys: created on first start, stored in its
//! own database, used to sign access tokens and published as a JWKS.
//!
//! An admin rotates them ([`Keyring::rotate`]): the new key is in the JWKS
//! at once and signs [`ACTIVATION_DELAY`] later (every replica reloads the
//! keys within [`RELOAD_EVERY`]); the old ones stay in the JWKS until every
//! token they signed has expired. Other services fetch the JWKS when they
//! meet a `kid` they do not know, so none needs a restart.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::auth::{Claims, KeyLoader, REFETCH_INTERVAL, TokenVerifier};
use dure_chassis::db::Db;
use dure_chassis::{ApiError, clock};
use dure_contracts::jwks::{Jwk, Jwks};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Serialize;
use sqlx::Row;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct PublishedKey {
    kid: String,
    public: [u8; 32],
    created_at: String,
    retired_at: Option<String>,
    /// When it may sign: [`ACTIVATION_DELAY`] after it was created.
    signs_from: OffsetDateTime,
    signing: EncodingKey,
}

/// Every published key, newest first; the newest active one signs.
pub struct SigningKeys {
    published: Vec<PublishedKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.published.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &kids).finish()
    }
}

/// A new key is published this long before it signs: a verifier that
/// fetched the keys just before it existed may fetch again by then
/// (`REFETCH_INTERVAL`), so its first token is never refused.
pub const ACTIVATION_DELAY: Duration = Duration::from_secs(REFETCH_INTERVAL.as_secs() + 2);

impl SigningKeys {
    /// Creates the first key if there is none. Concurrent first starts race
    /// on generation 1; the loser's insert does nothing.
    async fn create_first(db: &Db) -> anyhow::Result<()> {
        let (seed, public) = new_key_pair();
        sqlx::query(
            "INSERT INTO signing_keys (generation, kid, private_key, public_key, created_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(seed.to_vec())
        .bind(public.to_vec())
        .bind(clock::now())
        .execute(db.writer())
        .await
        .context("creating the first signing key")?;
        Ok(())
    }

    /// The keys published now.
    async fn load(db: &Db) -> anyhow::Result<Self> {
        let rows = sqlx::query(
            "SELECT kid, private_key, public_key, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY generation DESC",
        )
        .bind(clock::now())
        .fetch_all(db.pool())
        .await
        .context("loading signing keys")?;
        let mut published = Vec::new();
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let private: Vec<u8> = row.try_get("private_key")?;
            let public: Vec<u8> = row.try_get("public_key")?;
            let created_at: String = row.try_get("created_at")?;
            let retired_at: Option<String> = row.try_get("retired_at")?;
            let public: [u8; 32] = public
                .try_into()
                .ok()
                .context("a stored public key is not 32 bytes")?;
            anyhow::ensure!(private.len() == 32, "a stored private key is not 32 bytes");
            let mut der = PKCS8_ED25519_PREFIX.to_vec();
            der.extend_from_slice(&private);
            let created = clock::parse(&created_at).context("a key's created_at is not a time")?;
            published.push(PublishedKey {
                kid,
                public,
                created_at,
                retired_at,
                signs_from: created + ACTIVATION_DELAY,
                signing: EncodingKey::from_ed_der(&der),
            });
        }
        anyhow::ensure!(!published.is_empty(), "no signing key is published");
        Ok(Self { published })
    }

    /// The newest key whose activation has come; the oldest one before any
    /// has (the very first key signs at once).
    fn signer(&self, now: OffsetDateTime) -> &PublishedKey {
        self.published
            .iter()
            .find(|key| key.signs_from <= now)
            .or(self.published.last())
            .expect("a loaded key set is never empty")
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let key = self.signer(OffsetDateTime::now_utc());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.signing).context("signing an access token")
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .published
                .iter()
                .map(|key| Jwk::ed25519(&key.kid, URL_SAFE_NO_PAD.encode(key.public)))
                .collect(),
        }
    }
}

fn new_key_pair() -> ([u8; 32], [u8; 32]) {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    (seed, public)
}

/// How often a replica reloads the keys, so that it signs with a key
/// another replica rotated in.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// One signing key, as admins see it (never its private half).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: String,
    /// When it starts signing: a new key is published first.
    pub signs_from: String,
    /// When it leaves the JWKS: once every token it signed has expired.
    pub retires_at: Option<String>,
    /// Whether new tokens are signed with it.
    pub signing: bool,
}

/// The keys of this replica, kept in step with the database.
pub struct Keyring {
    db: Db,
    current: RwLock<Arc<SigningKeys>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Loads the keys, creating the first one if there is none.
    pub async fn open(db: &Db) -> anyhow::Result<Self> {
        SigningKeys::create_first(db).await?;
        let keys = SigningKeys::load(db).await?;
        Ok(Self {
            db: db.clone(),
            current: RwLock::new(Arc::new(keys)),
        })
    }

    fn current(&self) -> Arc<SigningKeys> {
        self.current.read().map_or_else(
            |poisoned| poisoned.into_inner().clone(),
            |keys| keys.clone(),
        )
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        self.current().sign(claims)
    }

    /// Reads the published keys again.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let keys = Arc::new(SigningKeys::load(&self.db).await?);
        if let Ok(mut current) = self.current.write() {
            *current = keys;
        }
        Ok(())
    }

    /// The JWKS as the database has it now: a verifier that met an unknown
    /// `kid` must find a key rotated in by any replica.
    pub async fn jwks(&self) -> anyhow::Result<Jwks> {
        self.reload().await?;
        Ok(self.current().jwks())
    }

    /// A new key is published now and signs after [`ACTIVATION_DELAY`];
    /// the ones before it stay published until the tokens they sign until
    /// then have expired (`keep_old_for` after that).
    pub async fn rotate(&self, keep_old_for: Duration) -> Result<KeyInfo, ApiError> {
        let (seed, public) = new_key_pair();
        let created = OffsetDateTime::now_utc();
        let retires = clock::format(created + ACTIVATION_DELAY + keep_old_for);
        let kid = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin().await?;
        let newest: i64 = sqlx::query_scalar("SELECT MAX(generation) FROM signing_keys")
            .fetch_one(&mut *tx)
            .await
            .map_err(anyhow::Error::from)?;
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (generation, kid, private_key, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(newest + 1)
        .bind(&kid)
        .bind(seed.to_vec())
        .bind(public.to_vec())
        .bind(clock::format(created))
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::Conflict(
                "another rotation happened at the same moment; look at the keys and retry".into(),
            ));
        }
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 \
             WHERE retired_at IS NULL AND generation < $2",
        )
        .bind(&retires)
        .bind(newest + 1)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        self.reload().await?;
        Ok(KeyInfo {
            kid,
            created_at: clock::format(created),
            signs_from: clock::format(created + ACTIVATION_DELAY),
            retires_at: None,
            signing: false,
        })
    }

    /// Every published key, newest first.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, ApiError> {
        let keys = SigningKeys::load(&self.db).await?;
        let signer = keys.signer(OffsetDateTime::now_utc()).kid.clone();
        Ok(keys
            .published
            .iter()
            .map(|key| KeyInfo {
                kid: key.kid.clone(),
                created_at: key.created_at.clone(),
                signs_from: clock::format(key.signs_from),
                retires_at: key.retired_at.clone(),
                signing: key.kid == signer,
            })
            .collect())
    }

    /// A verifier for identity's own endpoints: keys from its own database,
    /// no HTTP round trip to itself.
    pub fn verifier(&self) -> TokenVerifier {
        let db = self.db.clone();
        let load: KeyLoader = Arc::new(move || {
            let db = db.clone();
            Box::pin(async move {
                let keys = SigningKeys::load(&db).await?;
                Ok(keys
                    .published
                    .iter()
                    .map(|k| (k.kid.clone(), k.public))
                    .collect())
            })
        });
        let keys = self.current();
        TokenVerifier::with_loader(
            keys.published.iter().map(|k| (k.kid.clone(), k.public)),
            load,
        )
    }
}
