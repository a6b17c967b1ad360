//! Access tokens under attack, and the keys that sign them.

use crate::helpers::{Backend, assert_problem, jwt_payload, spawn_app, spawn_app_with};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    user_routes_need_a_valid_token,
    tampered_unsigned_and_foreign_tokens_are_refused,
    expired_tokens_are_refused,
    jwks_publishes_the_signing_key,
    signing_key_survives_a_restart,
    first_admin_comes_from_the_admin_password,
);

async fn user_routes_need_a_valid_token(backend: Backend) {
    let app = spawn_app(&backend).await;
    let no_token = app.client.get(app.url("/api/user")).send().await.unwrap();
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    assert_problem(no_token, StatusCode::UNAUTHORIZED).await;
    for header in [
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "Bearer ....",
        "Bearer é",
    ] {
        let response = app
            .client
            .get(app.url("/api/user"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let response = app
            .client
            .request(method, app.url("/api/user"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

async fn tampered_unsigned_and_foreign_tokens_are_refused(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let parts: Vec<&str> = tokens.access.split('.').collect();

    // Payload changed to claim admin, signature kept.
    let mut claims = jwt_payload(&tokens.access);
    claims["role"] = json!("admin");
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_problem(app.get_me(&tampered).await, StatusCode::UNAUTHORIZED).await;

    // alg: none with no signature.
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&none_header).unwrap()),
        parts[1]
    );
    assert_problem(app.get_me(&none).await, StatusCode::UNAUTHORIZED).await;

    // HS256 "signed" with the public key as the secret (algorithm confusion).
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = header["kid"].as_str().map(str::to_owned);
    let jwks: Value = app
        .client
        .get(app.url("/api/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_problem(app.get_me(&confused).await, StatusCode::UNAUTHORIZED).await;

    // Signed by another identity's key, with this one's kid.
    let other = spawn_app(&Backend::Sqlite).await;
    let other_tokens = other.user_with_tokens("ann").await;
    let other_parts: Vec<&str> = other_tokens.access.split('.').collect();
    let foreign = format!("{}.{}.{}", parts[0], other_parts[1], other_parts[2]);
    assert_problem(app.get_me(&foreign).await, StatusCode::UNAUTHORIZED).await;
    // And as it is, naming a kid this identity never had.
    assert_problem(
        app.get_me(&other_tokens.access).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn expired_tokens_are_refused(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let mut claims = jwt_payload(&tokens.access);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    claims["iat"] = json!(now - 3600);
    claims["exp"] = json!(now - 60);
    let expired = app.sign_with_service_key(&claims).await;
    let body = assert_problem(app.get_me(&expired).await, StatusCode::UNAUTHORIZED).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    // The same claims, unexpired and signed by the same key, are accepted:
    // the refusal above was for expiry alone.
    claims["exp"] = json!(now + 60);
    let fresh = app.sign_with_service_key(&claims).await;
    assert_eq!(app.get_me(&fresh).await.status(), StatusCode::OK);

    // A wrong issuer is refused.
    claims["iss"] = json!("someone-else");
    let wrong_issuer = app.sign_with_service_key(&claims).await;
    assert_problem(app.get_me(&wrong_issuer).await, StatusCode::UNAUTHORIZED).await;
}

async fn jwks_publishes_the_signing_key(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let jwks: Value = app
        .client
        .get(app.url("/api/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(key["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());

    // A verifier that knows only the JWKS URL accepts the token: what every
    // other service does.
    let verifier =
        dure_chassis::auth::TokenVerifier::from_jwks_url(app.url("/api/.well-known/jwks.json"));
    let claims = verifier.verify(&tokens.access).await.unwrap();
    assert_eq!(claims.name, "ann");
}

async fn signing_key_survives_a_restart(backend: Backend) {
    let mut app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    app.restart().await;
    assert_eq!(app.get_me(&tokens.access).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&tokens.refresh).await.status(), StatusCode::OK);
}

async fn first_admin_comes_from_the_admin_password(backend: Backend) {
    let mut app = spawn_app_with(&backend, |config| {
        config.admin_password = Some(Secret::new("admin password 1"));
    })
    .await;
    let response = app.login("admin", "admin password 1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        jwt_payload(body["access_token"].as_str().unwrap())["role"],
        "admin"
    );
    // Starting again does not create a second admin or reset the password.
    app.restart().await;
    assert_eq!(
        app.login("admin", "admin password 1").await.status(),
        StatusCode::OK
    );
    // Nobody can sign up as a second `admin`.
    assert_eq!(app.sign_up("admin").await.status(), StatusCode::CONFLICT);
}
