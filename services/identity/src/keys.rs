//! identity's Ed25519 signing keys: created on first start, stored in its
//! own database, used to sign access tokens and published as a JWKS.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::auth::{Claims, TokenVerifier};
use dure_chassis::clock;
use dure_chassis::db::Db;
use dure_contracts::jwks::{Jwk, Jwks};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use sqlx::Row;

/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct PublishedKey {
    kid: String,
    public: [u8; 32],
}

/// The key that signs and every key that verifies.
pub struct SigningKeys {
    signing_kid: String,
    signing: EncodingKey,
    published: Vec<PublishedKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Loads the keys, creating the first one if there is none. Concurrent
    /// first starts race on generation 1; the loser's insert does nothing and
    /// both load the winner's key.
    pub async fn load_or_create(db: &Db) -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        sqlx::query(
            "INSERT INTO signing_keys (generation, kid, private_key, public_key, created_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(seed.to_vec())
        .bind(public.to_vec())
        .bind(clock::now())
        .execute(db.pool())
        .await
        .context("creating the first signing key")?;

        let rows = sqlx::query(
            "SELECT kid, private_key, public_key FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY generation DESC",
        )
        .fetch_all(db.pool())
        .await
        .context("loading signing keys")?;
        let mut published = Vec::new();
        let mut signing = None;
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let private: Vec<u8> = row.try_get("private_key")?;
            let public: Vec<u8> = row.try_get("public_key")?;
            let public: [u8; 32] = public
                .try_into()
                .ok()
                .context("a stored public key is not 32 bytes")?;
            if signing.is_none() {
                anyhow::ensure!(private.len() == 32, "a stored private key is not 32 bytes");
                let mut der = PKCS8_ED25519_PREFIX.to_vec();
                der.extend_from_slice(&private);
                signing = Some((kid.clone(), EncodingKey::from_ed_der(&der)));
            }
            published.push(PublishedKey { kid, public });
        }
        let (signing_kid, signing) = signing.context("no signing key is active")?;
        Ok(Self {
            signing_kid,
            signing,
            published,
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).context("signing an access token")
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

    /// A verifier for identity's own endpoints: no HTTP round trip to itself.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::with_keys(
            self.published
                .iter()
                .map(|key| (key.kid.clone(), key.public)),
        )
    }
}
