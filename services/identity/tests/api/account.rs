//! `GET`, `PATCH`, `DELETE /api/user`.

use crate::helpers::{Backend, PASSWORD, assert_problem, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    get_user_returns_own_account,
    patch_changes_name_and_email,
    patch_refuses_role_and_id_and_changes_nothing,
    new_password_needs_the_current_one,
    password_change_ends_other_sessions,
    patch_to_a_taken_email_is_409,
    delete_ends_the_account_everywhere,
    users_only_ever_see_their_own_account,
);

async fn get_user_returns_own_account(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let response = app.get_me(&tokens.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "ann");
    assert_eq!(user["email"], "ann@example.com");
}

async fn patch_changes_name_and_email(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let response = app
        .patch_me(
            &tokens.access,
            &json!({"display_name": "  앤 리  ", "email": "New@Example.org"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["display_name"], "앤 리");
    assert_eq!(user["email"], "new@example.org");
    let again: Value = app.get_me(&tokens.access).await.json().await.unwrap();
    assert_eq!(again, user);
    // Refreshed tokens carry the new name.
    let pair: Value = app.refresh(&tokens.refresh).await.json().await.unwrap();
    let claims = crate::helpers::jwt_payload(pair["access_token"].as_str().unwrap());
    assert_eq!(claims["name"], "앤 리");
    // An empty PATCH changes nothing.
    let unchanged: Value = app
        .patch_me(&tokens.access, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged, user);
}

async fn patch_refuses_role_and_id_and_changes_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let before: Value = app.get_me(&tokens.access).await.json().await.unwrap();
    for body in [
        json!({"role": "admin"}),
        json!({"id": "someone-else", "display_name": "x"}),
        json!({"display_name": "x", "role": "user"}),
        json!({"displayname": "typo"}),
    ] {
        assert_problem(
            app.patch_me(&tokens.access, &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    // Invalid values anywhere in the body: 422, and no field is changed.
    let body = json!({"display_name": "fine", "email": "broken"});
    assert_problem(
        app.patch_me(&tokens.access, &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let after: Value = app.get_me(&tokens.access).await.json().await.unwrap();
    assert_eq!(before, after);
}

async fn new_password_needs_the_current_one(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let new = "a whole new password";

    let missing = assert_problem(
        app.patch_me(&tokens.access, &json!({"password": new}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(missing["errors"][0]["field"], "current_password");
    let wrong = app
        .patch_me(
            &tokens.access,
            &json!({"password": new, "current_password": "not it at all"}),
        )
        .await;
    assert_problem(wrong, StatusCode::FORBIDDEN).await;
    assert_problem(
        app.patch_me(
            &tokens.access,
            &json!({"password": "short", "current_password": PASSWORD}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(app.login("ann", PASSWORD).await.status(), StatusCode::OK);

    let changed = app
        .patch_me(
            &tokens.access,
            &json!({"password": new, "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        app.login("ann", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login("ann", new).await.status(), StatusCode::OK);
}

async fn password_change_ends_other_sessions(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let response = app
        .patch_me(
            &tokens.access,
            &json!({"password": "a whole new password", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED).await;
}

async fn patch_to_a_taken_email_is_409(backend: Backend) {
    let app = spawn_app(&backend).await;
    app.sign_up("bob").await;
    let tokens = app.user_with_tokens("ann").await;
    let response = app
        .patch_me(&tokens.access, &json!({"email": "BOB@example.com"}))
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    let user: Value = app.get_me(&tokens.access).await.json().await.unwrap();
    assert_eq!(user["email"], "ann@example.com");
}

async fn delete_ends_the_account_everywhere(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tokens = app.user_with_tokens("ann").await;
    let id = app
        .get_me(&tokens.access)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .client
        .delete(app.url("/api/user"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_problem(app.get_me(&tokens.access).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.login("ann", PASSWORD).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED).await;
    let profile = app
        .client
        .get(app.url(&format!("/api/users/{id}")))
        .send()
        .await
        .unwrap();
    assert_problem(profile, StatusCode::NOT_FOUND).await;
    // Deleting again with the old token is refused, not a 5xx.
    let again = app
        .client
        .delete(app.url("/api/user"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_problem(again, StatusCode::UNAUTHORIZED).await;
}

async fn users_only_ever_see_their_own_account(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user_with_tokens("ann").await;
    let bob = app.user_with_tokens("bob").await;
    let seen_by_bob: Value = app.get_me(&bob.access).await.json().await.unwrap();
    assert_eq!(seen_by_bob["username"], "bob");
    // Bob's changes touch only Bob.
    app.patch_me(&bob.access, &json!({"display_name": "Bobby"}))
        .await;
    let ann_user: Value = app.get_me(&ann.access).await.json().await.unwrap();
    assert_eq!(ann_user["display_name"], "ann");
    // Bob cannot use Ann's refresh token family to get at her account after logout.
    app.post("/api/logout", &json!({"refresh_token": bob.refresh}))
        .await;
    assert_eq!(app.refresh(&ann.refresh).await.status(), StatusCode::OK);
}
