//! Sign-up, the caller's own account, and public profiles.

use super::current_user;
use crate::Identity;
use crate::domain::{DisplayName, Email, NewPassword, Username};
use crate::refresh;
use crate::throttle::Subject;
use crate::users::{self, PublicProfile, User, UserRecord};
use crate::{erasure, events};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dure_chassis::auth::Claims;
use dure_chassis::error::FieldErrors;
use dure_chassis::http::{ClientAddr, Json};
use dure_chassis::openapi;
use dure_chassis::{ApiError, clock};
use dure_contracts::{FieldError, Problem};
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{Modify, ToSchema};

/// `POST /api/users`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    #[schema(schema_with = Username::schema)]
    username: String,
    #[schema(schema_with = Email::schema)]
    email: String,
    #[schema(schema_with = NewPassword::schema)]
    password: String,
    /// Default: the username.
    #[schema(schema_with = display_name_or_null)]
    display_name: Option<String>,
}

/// `PATCH /api/user`: every field optional; a new password needs the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    #[schema(schema_with = display_name_or_null)]
    display_name: Option<String>,
    #[schema(schema_with = email_or_null)]
    email: Option<String>,
    #[schema(schema_with = password_or_null)]
    password: Option<String>,
    #[schema(schema_with = current_password_schema)]
    current_password: Option<String>,
}

fn display_name_or_null() -> Object {
    openapi::or_null(DisplayName::schema())
}

fn email_or_null() -> Object {
    openapi::or_null(Email::schema())
}

fn password_or_null() -> Object {
    openapi::or_null(NewPassword::schema())
}

fn current_password_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .description(Some("required with `password`"))
        .build()
}

/// Declares what `update_me` enforces and a property list cannot say: a
/// new password comes with the current one.
pub struct PasswordNeedsCurrent;

impl Modify for PasswordNeedsCurrent {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let schema = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("UserChanges"));
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    "dependentRequired".into(),
                    serde_json::json!({"password": ["current_password"]}),
                );
        }
    }
}

/// Creates an account.
#[utoipa::path(post, path = "/api/users", tag = "identity", request_body = SignUp,
    responses(
        (status = 201, description = "account created", body = User),
        (status = 400, description = "malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "username or email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many accounts created from this address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_up(
    State(identity): State<Identity>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<SignUp>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    let mut invalid = FieldErrors::default();
    let username = invalid.check(Username::parse(&body.username));
    let email = invalid.check(Email::parse(&body.email));
    let password = invalid.check(NewPassword::parse(&body.password, "password"));
    let display_name = match body.display_name.as_deref() {
        Some(name) => invalid
            .check(DisplayName::parse(name))
            .map(|n| n.as_str().to_owned()),
        None => username.as_ref().map(|u| u.as_str().to_owned()),
    };
    invalid.into_result()?;
    let (Some(username), Some(email), Some(password), Some(display_name)) =
        (username, email, password, display_name)
    else {
        unreachable!("every field is present when no field is invalid")
    };

    let throttled: Vec<Subject> = client.map(Subject::SignUpsFrom).into_iter().collect();
    identity
        .throttle
        .check(identity.db.pool(), &throttled)
        .await?;

    let record = UserRecord {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.into_string(),
        email: email.as_str().to_owned(),
        display_name,
        password_hash: identity.passwords.hash(password.expose()).await?,
        role: "user".into(),
        created_at: clock::now(),
    };
    let mut tx = identity.db.begin().await?;
    users::insert(&mut tx, &record).await?;
    identity
        .outbox
        .append(&mut tx, &events::registered(&record))
        .await?;
    identity.outbox.commit(tx).await?;
    identity
        .throttle
        .record(identity.db.writer(), &throttled)
        .await?;
    tracing::info!(user_id = %record.id, "account created");
    Ok((StatusCode::CREATED, axum::Json(record.into())))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/user", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_me(
    State(identity): State<Identity>,
    claims: Claims,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(current_user(&identity, &claims).await?.into()))
}

/// Changes the caller's display name, email or password.
#[utoipa::path(patch, path = "/api/user", tag = "identity", security(("bearer" = [])), request_body = UserChanges,
    responses(
        (status = 200, body = User),
        (status = 400, description = "malformed body, or `role`/`id` given", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`current_password` is not correct", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many wrong current passwords", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_me(
    State(identity): State<Identity>,
    claims: Claims,
    Json(body): Json<Value>,
) -> Result<axum::Json<User>, ApiError> {
    if let Some(object) = body.as_object() {
        for field in ["role", "id"] {
            if object.contains_key(field) {
                return Err(ApiError::BadRequest(format!("`{field}` cannot be changed")));
            }
        }
        // Proof is a string; `null` would read as "not given".
        if object.get("current_password").is_some_and(Value::is_null) {
            return Err(ApiError::BadRequest(
                "`current_password` must be a string".into(),
            ));
        }
    }
    let changes: UserChanges = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("unexpected JSON: {e}")))?;
    let mut user = current_user(&identity, &claims).await?;
    let display_name_before = user.display_name.clone();

    let mut invalid = FieldErrors::default();
    if let Some(name) = &changes.display_name
        && let Some(name) = invalid.check(DisplayName::parse(name))
    {
        user.display_name = name.as_str().to_owned();
    }
    if let Some(email) = &changes.email
        && let Some(email) = invalid.check(Email::parse(email))
    {
        user.email = email.as_str().to_owned();
    }
    let new_password = match &changes.password {
        Some(password) => invalid.check(NewPassword::parse(password, "password")),
        None => None,
    };
    if new_password.is_some() && changes.current_password.is_none() {
        invalid.0.push(FieldError::new(
            "current_password",
            "is required to set a new password",
        ));
    }
    invalid.into_result()?;

    if let (Some(new_password), Some(current)) = (&new_password, &changes.current_password) {
        // A stolen access token must not become a password-guessing oracle.
        let subjects = [Subject::Account(user.id.clone())];
        identity
            .throttle
            .check(identity.db.pool(), &subjects)
            .await?;
        if !identity
            .passwords
            .verify(current, Some(&user.password_hash))
            .await?
        {
            identity
                .throttle
                .record(identity.db.writer(), &subjects)
                .await?;
            // 403, not 422: the request is well-formed, the caller lacks
            // the proof this change needs.
            return Err(ApiError::Forbidden(
                "`current_password` is not correct".into(),
            ));
        }
        user.password_hash = identity.passwords.hash(new_password.expose()).await?;
    }

    let mut tx = identity.db.begin().await?;
    users::update(&mut tx, &user).await?;
    if new_password.is_some() {
        // Other sessions end with the old password.
        refresh::revoke_all_of_user(&mut tx, &user.id).await?;
    }
    if user.display_name != display_name_before {
        identity
            .outbox
            .append(&mut tx, &events::updated(&user))
            .await?;
    }
    identity.outbox.commit(tx).await?;
    Ok(axum::Json(user.into()))
}

/// Deletes the caller's account: it can no longer log in and its tokens stop working.
#[utoipa::path(delete, path = "/api/user", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 204, description = "account deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_me(
    State(identity): State<Identity>,
    claims: Claims,
) -> Result<StatusCode, ApiError> {
    let user = current_user(&identity, &claims).await?;
    let mut tx = identity.db.begin().await?;
    if !users::disable(&mut tx, &user.id).await? {
        return Err(ApiError::Unauthorized(
            "the account of this token no longer exists".into(),
        ));
    }
    let deleted = events::deleted(&user, identity.access_token_ttl);
    identity.outbox.append(&mut tx, &deleted).await?;
    erasure::start(&mut tx, &identity.outbox, &identity.erasure, &user.id).await?;
    identity.outbox.commit(tx).await?;
    tracing::info!(user_id = %user.id, "account deleted; its erasure started");
    Ok(StatusCode::NO_CONTENT)
}

/// Anyone's public profile.
#[utoipa::path(get, path = "/api/users/{id}", tag = "identity",
    params(("id" = uuid::Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = PublicProfile),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn public_profile(
    State(identity): State<Identity>,
    Path(id): Path<String>,
) -> Result<axum::Json<PublicProfile>, ApiError> {
    let not_found = || ApiError::NotFound("no such user".into());
    if !dure_chassis::openapi::is_uuid(&id) {
        return Err(not_found());
    }
    let user = users::by_id(identity.db.pool(), &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(axum::Json(PublicProfile {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
    }))
}
