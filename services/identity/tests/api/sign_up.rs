//! `POST /api/users`, `GET /api/users/{id}`.

use crate::helpers::{Backend, PASSWORD, assert_problem, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    sign_up_returns_the_new_user,
    duplicate_username_or_email_is_409,
    invalid_fields_are_422_and_create_nothing,
    public_profile_shows_only_public_fields,
);

async fn sign_up_returns_the_new_user(backend: Backend) {
    let app = spawn_app(&backend).await;
    let response = app
        .post(
            "/api/users",
            &json!({"username": "ann", "email": "Ann@Example.COM", "password": PASSWORD, "display_name": "Ann Lee"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "ann");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["display_name"], "Ann Lee");
    assert_eq!(user["role"], "user");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    assert!(dure_chassis::clock::parse(user["created_at"].as_str().unwrap()).is_some());
    let keys: Vec<&String> = user.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        6,
        "no password hash or other internals: {keys:?}"
    );

    // Without display_name, the username stands in.
    let bob: Value = app.sign_up("bob").await.json().await.unwrap();
    assert_eq!(bob["display_name"], "bob");
}

async fn duplicate_username_or_email_is_409(backend: Backend) {
    let app = spawn_app(&backend).await;
    assert_eq!(app.sign_up("ann").await.status(), StatusCode::CREATED);

    let same_name = app
        .post(
            "/api/users",
            &json!({"username": "ann", "email": "other@example.com", "password": PASSWORD}),
        )
        .await;
    let body = assert_problem(same_name, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("username"));

    let same_email = app
        .post(
            "/api/users",
            &json!({"username": "ann2", "email": "ANN@example.com", "password": PASSWORD}),
        )
        .await;
    let body = assert_problem(same_email, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("email"));
}

async fn invalid_fields_are_422_and_create_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let response = app
        .post(
            "/api/users",
            &json!({"username": "A!", "email": "not-an-email", "password": "short"}),
        )
        .await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"]);

    for (username, display_name) in [
        ("ab", "fine"),
        (&"a".repeat(33) as &str, "fine"),
        ("ann", ""),
        ("ann", &"x".repeat(65) as &str),
        ("ann", "bell\u{7}"),
    ] {
        let response = app
            .post(
                "/api/users",
                &json!({"username": username, "email": "ann@example.com", "password": PASSWORD, "display_name": display_name}),
            )
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    // Nothing was created by the failed attempts: the name is still free.
    assert_eq!(app.sign_up("ann").await.status(), StatusCode::CREATED);
}

async fn public_profile_shows_only_public_fields(backend: Backend) {
    let app = spawn_app(&backend).await;
    let user: Value = app.sign_up("ann").await.json().await.unwrap();
    let id = user["id"].as_str().unwrap();

    let profile: Value = app
        .client
        .get(app.url(&format!("/api/users/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        profile,
        json!({"id": id, "username": "ann", "display_name": "ann"})
    );

    for missing in [
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
        "1%27%20OR%201%3D1".to_owned(),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/users/{missing}")))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}
