//! Login, token refresh, logout, and the public keys tokens are checked with.

use crate::Identity;
use crate::refresh::{self, Redemption};
use crate::throttle::Subject;
use crate::users::{self, UserRecord};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use dure_chassis::ApiError;
use dure_chassis::auth::{Claims, ISSUER};
use dure_chassis::db::Tx;
use dure_chassis::http::{ClientAddr, Json};
use dure_chassis::openapi;
use dure_contracts::jwks::Jwks;
use dure_contracts::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

/// `POST /api/login`: `username` may also be the email address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(schema_with = login_name_schema)]
    username: String,
    #[schema(schema_with = login_password_schema)]
    password: String,
}

/// Anything with a character that is not whitespace: what is not a known
/// username or email gets the same 401 as a wrong password.
fn login_name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("[^{}]", openapi::WHITESPACE)))
        .examples([serde_json::json!("ann_lee")])
        .build()
}

fn login_password_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .examples([serde_json::json!("correct horse battery")])
        .build()
}

/// `POST /api/token/refresh` and `POST /api/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The `refresh_token` of the last token pair.
    refresh_token: String,
}

/// A fresh access token and the refresh token that replaces the last one.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
}

fn bad_credentials() -> ApiError {
    ApiError::Unauthorized("invalid username or password".into())
}

/// Exchanges a username (or email) and password for tokens.
#[utoipa::path(post, path = "/api/login", tag = "identity", request_body = Login,
    responses(
        (status = 200, body = TokenPair),
        (status = 401, description = "wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`username` blank or `password` empty", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed attempts", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(identity): State<Identity>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Login>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let name = body.username.trim().to_lowercase();
    let mut missing = Vec::new();
    if name.is_empty() {
        missing.push(FieldError::new("username", "is required"));
    }
    if body.password.is_empty() {
        missing.push(FieldError::new("password", "is required"));
    }
    if !missing.is_empty() {
        return Err(ApiError::Validation(missing));
    }

    let pool = identity.db.pool();
    // Nothing with control characters can be a username or email (and
    // Postgres refuses NUL in a query): no lookup, the same 401.
    let plausible_name = name.chars().count() <= 254 && !name.chars().any(char::is_control);
    let user = if plausible_name {
        users::by_login_name(pool, &name).await?
    } else {
        None
    };
    // Unknown names are counted by what was typed, cleaned of what the
    // database cannot store and cut to a sane length.
    let typed = || {
        name.chars()
            .filter(|c| !c.is_control())
            .take(254)
            .collect::<String>()
    };
    let account = Subject::Account(user.as_ref().map_or_else(typed, |u| u.id.clone()));
    let mut subjects = vec![account.clone()];
    subjects.extend(client.map(Subject::Address));
    identity.throttle.check(pool, &subjects).await?;

    let plausible = body.password.chars().count() <= 1024;
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let matches = plausible && identity.passwords.verify(&body.password, hash).await?;
    let Some(user) = user.filter(|_| matches) else {
        identity
            .throttle
            .record(identity.db.writer(), &subjects)
            .await?;
        return Err(bad_credentials());
    };
    identity
        .throttle
        .clear(identity.db.writer(), &account)
        .await?;

    let mut tx = identity.db.begin().await?;
    let family = uuid::Uuid::now_v7().to_string();
    let pair = issue_tokens(&identity, &mut tx, &user, &family).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "logged in");
    Ok(axum::Json(pair))
}

/// Uses up a refresh token for a new token pair.
#[utoipa::path(post, path = "/api/token/refresh", tag = "identity", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenPair),
        (status = 401, description = "unknown, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(identity): State<Identity>,
    Json(body): Json<RefreshRequest>,
) -> Result<axum::Json<TokenPair>, ApiError> {
    let mut tx = identity.db.begin().await?;
    let redemption = refresh::redeem(&mut tx, &body.refresh_token).await?;
    let outcome = match redemption {
        Redemption::Valid { user_id, family_id } => match users::by_id_in(&mut tx, &user_id).await?
        {
            Some(user) => Ok(issue_tokens(&identity, &mut tx, &user, &family_id).await?),
            None => Err(ApiError::Unauthorized(
                "the account no longer exists".into(),
            )),
        },
        Redemption::Invalid => Err(ApiError::Unauthorized(
            "the refresh token is not valid".into(),
        )),
        Redemption::Reused => {
            tracing::warn!("a used refresh token was presented again; its family is revoked");
            Err(ApiError::Unauthorized(
                "the refresh token was already used; log in again".into(),
            ))
        }
    };
    // Commit even on failure: a detected reuse must stay revoked.
    tx.commit().await?;
    outcome.map(axum::Json)
}

/// Ends the session the refresh token belongs to.
#[utoipa::path(post, path = "/api/logout", tag = "identity", request_body = RefreshRequest,
    responses((status = 204, description = "logged out (also for unknown tokens)")))]
pub async fn logout(
    State(identity): State<Identity>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let mut tx = identity.db.begin().await?;
    refresh::revoke_family_of(&mut tx, &body.refresh_token).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys access tokens are signed with.
#[utoipa::path(get, path = "/api/.well-known/jwks.json", tag = "identity",
    responses((status = 200, body = Jwks)))]
pub async fn jwks(State(identity): State<Identity>) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=60")],
        axum::Json(identity.keys.jwks().await?),
    ))
}

async fn issue_tokens(
    identity: &Identity,
    tx: &mut Tx,
    user: &UserRecord,
    family: &str,
) -> Result<TokenPair, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = identity.access_token_ttl;
    let claims = Claims {
        sub: user.id.clone(),
        name: user.display_name.clone(),
        role: user.role(),
        exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        iss: ISSUER.into(),
    };
    let access_token = identity.keys.sign(&claims)?;
    let refresh_token = refresh::issue(tx, &user.id, family, identity.refresh_token_ttl).await?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
        refresh_token: refresh_token.0,
    })
}
