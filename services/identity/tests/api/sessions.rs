//! `POST /api/login`, `/api/token/refresh`, `/api/logout`, and throttling.

use crate::helpers::{Backend, PASSWORD, assert_problem, jwt_payload, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    login_with_username_or_email_returns_tokens,
    unknown_user_and_wrong_password_get_the_same_401,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_ends_the_session,
    five_failures_lock_the_account_with_retry_after,
    failures_per_client_address_are_limited,
    success_forgives_earlier_failures,
);

async fn login_with_username_or_email_returns_tokens(backend: Backend) {
    let app = spawn_app(&backend).await;
    let user: Value = app.sign_up("ann").await.json().await.unwrap();

    for name in ["ann", "ann@example.com", "ANN@EXAMPLE.COM"] {
        let response = app.login(name, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().unwrap().len() >= 40);

        let claims = jwt_payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], user["id"]);
        assert_eq!(claims["name"], "ann");
        assert_eq!(claims["role"], "user");
        assert_eq!(claims["iss"], "dure-identity");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            900
        );
        assert!(claims["jti"].is_string());
    }
}

async fn unknown_user_and_wrong_password_get_the_same_401(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.sign_up("ann").await;
    let wrong_password = assert_problem(
        app.login("ann", "wrong password!").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unknown_user = assert_problem(
        app.login("nobody", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(wrong_password, unknown_user);
    // Empty fields are a validation problem, not a failed login.
    assert_problem(app.login("", "").await, StatusCode::UNPROCESSABLE_ENTITY).await;
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;

    let response = app.refresh(&tokens.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, tokens.refresh);
    assert_eq!(
        app.get_me(second["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    // The used token is refused, and presenting it revokes its successor too.
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.refresh(second_refresh).await, StatusCode::UNAUTHORIZED).await;

    // Another login starts a new family that works.
    let response = app.login("ann", PASSWORD).await;
    let third: Value = response.json().await.unwrap();
    assert_eq!(
        app.refresh(third["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    assert_problem(app.refresh("made-up-token").await, StatusCode::UNAUTHORIZED).await;
}

async fn logout_ends_the_session(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let response = app
        .post("/api/logout", &json!({"refresh_token": tokens.refresh}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED).await;
    // Logging out an unknown token is harmless.
    let response = app
        .post("/api/logout", &json!({"refresh_token": "unknown"}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn five_failures_lock_the_account_with_retry_after(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.sign_up("ann").await;
    for _ in 0..5 {
        assert_eq!(
            app.login("ann", "wrong password!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is not checked now.
    let response = app.login("ann", PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=300).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // The email names the same account.
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Unknown names lock the same way, so a 429 reveals nothing.
    for _ in 0..5 {
        app.login("ghost", "wrong password!").await;
    }
    assert_eq!(
        app.login("ghost", "wrong password!").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other accounts are unaffected.
    app.sign_up("bob").await;
    assert_eq!(app.login("bob", PASSWORD).await.status(), StatusCode::OK);
}

async fn failures_per_client_address_are_limited(backend: Backend) {
    let app = spawn_app_with(&backend, |config| config.throttle.per_address = 3).await;
    app.sign_up("ann").await;
    let login_from = |address: &'static str, user: &'static str, password: &'static str| {
        app.client
            .post(app.url("/api/login"))
            .header("x-forwarded-for", address)
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            login_from("203.0.113.7", user, "wrong password!")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // A fourth name from the same address is refused; another address is not.
    assert_eq!(
        login_from("203.0.113.7", "ann", PASSWORD)
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        login_from("198.51.100.1", "ann", PASSWORD)
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn success_forgives_earlier_failures(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.sign_up("ann").await;
    for _ in 0..4 {
        app.login("ann", "wrong password!").await;
    }
    assert_eq!(app.login("ann", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..4 {
        app.login("ann", "wrong password!").await;
    }
    assert_eq!(app.login("ann", PASSWORD).await.status(), StatusCode::OK);
}
