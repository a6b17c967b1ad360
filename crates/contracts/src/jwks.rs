//! The JSON Web Key Set identity publishes and every service verifies with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /api/.well-known/jwks.json` (RFC 7517).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037): `kty` "OKP", `crv` "Ed25519", `x` the
/// base64url public key, `kid` the id tokens name in their header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

impl Jwk {
    /// An Ed25519 signing key's public half, as identity publishes it.
    pub fn ed25519(kid: impl Into<String>, x: impl Into<String>) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: x.into(),
            kid: kid.into(),
            alg: Some("EdDSA".into()),
            key_use: Some("sig".into()),
        }
    }
}
