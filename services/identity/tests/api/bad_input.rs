//! Bad input of every kind gets a clear 4xx problem and changes nothing.

use crate::helpers::{Backend, PASSWORD, assert_problem, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    malformed_bodies_are_400,
    wrong_content_type_is_415,
    oversize_bodies_are_413,
    hostile_strings_are_stored_verbatim,
    very_long_strings_are_422_not_500,
);

async fn raw_post(app: &crate::helpers::TestApp, path: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn malformed_bodies_are_400(backend: Backend) {
    let app = spawn_app(&backend).await;
    let cases = [
        ("/api/users", "{"),
        ("/api/users", "not json"),
        ("/api/users", ""),
        ("/api/users", "[]"),
        (
            "/api/users",
            r#"{"username": 5, "email": "a@b.c", "password": "0123456789"}"#,
        ),
        ("/api/users", r#"{"username": "ann", "email": "a@b.c"}"#),
        (
            "/api/users",
            r#"{"username": "ann", "email": "a@b.c", "password": "0123456789", "role": "admin"}"#,
        ),
        (
            "/api/users",
            r#"{"username": null, "email": "a@b.c", "password": "0123456789"}"#,
        ),
        ("/api/login", r#"{"username": ["ann"], "password": "x"}"#),
        ("/api/login", r#"{"username": "ann"}"#),
        ("/api/token/refresh", r#"{"refresh_token": 12}"#),
        ("/api/token/refresh", "{}"),
        ("/api/logout", r#"{"token": "x"}"#),
    ];
    for (path, body) in cases {
        let problem =
            assert_problem(raw_post(&app, path, body).await, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path} {body}"
        );
    }
    // None of that created an account.
    assert_eq!(app.sign_up("ann").await.status(), StatusCode::CREATED);
}

async fn wrong_content_type_is_415(backend: Backend) {
    let app = spawn_app(&backend).await;
    let response = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "text/plain")
        .body(r#"{"username":"ann","email":"a@b.c","password":"0123456789"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

async fn oversize_bodies_are_413(backend: Backend) {
    let app = spawn_app(&backend).await;
    // Over the 256 KiB every service takes.
    let huge = "x".repeat(300 * 1024);
    let body = json!({"username": "ann", "email": "ann@example.com", "password": PASSWORD, "display_name": huge});
    assert_problem(
        app.post("/api/users", &body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    // Streamed without a length, it is cut off all the same, and the
    // answer arrives although the client was still sending: the service
    // drains what lies past the limit before it answers.
    for _ in 0..5 {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..300).map(|_| Ok(vec![b' '; 1024])).collect();
        let sent = app
            .client
            .post(app.url("/api/login"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
            .send()
            .await
            .expect("the 413 arrives, not a reset");
        assert_problem(sent, StatusCode::PAYLOAD_TOO_LARGE).await;
    }
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::iter(chunks)
}

async fn hostile_strings_are_stored_verbatim(backend: Backend) {
    let app = spawn_app(&backend).await;
    for (username, display_name) in [
        ("robert", "Robert'); DROP TABLE users;--"),
        ("quote", "\" OR 1=1 --"),
        ("html", "<script>alert('x')</script>"),
        ("korean", "김철수 🦀"),
        ("rtl", "\u{202e}evil"),
    ] {
        let response = app
            .post(
                "/api/users",
                &json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD, "display_name": display_name}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{display_name}");
        let user: Value = response.json().await.unwrap();
        assert_eq!(user["display_name"], display_name);
    }
    // The table is intact and logins by SQL-looking names fail cleanly.
    assert_eq!(app.login("robert", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.login("' OR '1'='1", "' OR '1'='1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("x@y' --", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // NUL, which Postgres refuses in text, is a clean 401 or 422, never a 500.
    assert_eq!(
        app.login("ann\u{0}", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let nul_name = json!({"username": "nul", "email": "nul@example.com", "password": PASSWORD, "display_name": "a\u{0}b"});
    assert_problem(
        app.post("/api/users", &nul_name).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

async fn very_long_strings_are_422_not_500(backend: Backend) {
    let app = spawn_app(&backend).await;
    let long = "a".repeat(5000);
    let body = json!({"username": long, "email": format!("{long}@example.com"), "password": long.repeat(2), "display_name": long});
    let problem = assert_problem(
        app.post("/api/users", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 4);
    assert_problem(app.login(&long, &long).await, StatusCode::UNAUTHORIZED).await;
}
