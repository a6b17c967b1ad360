//! Writing, reading, editing and deleting postings, and who may.

use crate::helpers::spawn_app;
use dure_chassis::testing::{Backend, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    a_user_publishes_and_anyone_reads,
    writes_need_a_valid_token,
    only_the_author_or_an_admin_edits_and_deletes,
    invalid_postings_are_422_and_bad_bodies_400,
    hostile_text_is_stored_verbatim,
    unknown_ids_are_404,
);

async fn a_user_publishes_and_anyone_reads(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann Lee");
    let posting = app.publish(&ann, "Hello").await;
    assert_eq!(posting["title"], "Hello");
    assert_eq!(posting["body"], "text");
    assert_eq!(
        posting["author"],
        json!({"id": ann.id, "display_name": "Ann Lee"})
    );
    assert_eq!(posting["comment_count"], 0);
    assert_eq!(posting["created_at"], posting["updated_at"]);

    let id = posting["id"].as_str().unwrap();
    let read: Value = app
        .get(&format!("/api/postings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, posting);
    let list: Value = app.get("/api/postings").await.json().await.unwrap();
    assert_eq!(list["items"][0], posting);
    assert!(list["next_cursor"].is_null());
}

async fn writes_need_a_valid_token(backend: Backend) {
    let app = spawn_app(&backend).await;
    let body = json!({"title": "t", "body": "b"});
    assert_problem(
        app.send(Method::POST, "/api/postings", None, Some(&body))
            .await,
        401,
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/postings"))
        .bearer_auth("not.a.token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    // A token from another issuer (a key posting never saw).
    let stranger = dure_chassis::testing::TokenIssuer::start().await;
    let foreign =
        dure_chassis::testing::TestUser::new(&stranger, "Eve", dure_chassis::auth::Role::Admin);
    assert_problem(
        app.send(Method::POST, "/api/postings", Some(&foreign), Some(&body))
            .await,
        401,
    )
    .await;
    let list: Value = app.get("/api/postings").await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
}

async fn only_the_author_or_an_admin_edits_and_deletes(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, bob, admin) = (app.user("Ann"), app.user("Bob"), app.admin());
    let posting = app.publish(&ann, "Ann's").await;
    let path = format!("/api/postings/{}", posting["id"].as_str().unwrap());

    let edit = json!({"title": "Bob was here"});
    assert_problem(
        app.send(Method::PATCH, &path, Some(&bob), Some(&edit))
            .await,
        403,
    )
    .await;
    assert_problem(app.send(Method::DELETE, &path, Some(&bob), None).await, 403).await;
    let unchanged: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(unchanged, posting, "a refused edit changes nothing");

    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&ann),
            Some(&json!({"body": "new body"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!(edited["title"], "Ann's");
    assert_eq!(edited["body"], "new body");
    assert!(edited["updated_at"].as_str() > posting["updated_at"].as_str());

    let response = app
        .send(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(&json!({"title": "Moderated"})),
        )
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["title"],
        "Moderated"
    );

    assert_eq!(
        app.send(Method::DELETE, &path, Some(&admin), None)
            .await
            .status(),
        204
    );
    assert_problem(app.get(&path).await, 404).await;
    let mine = app.publish(&ann, "mine").await;
    let mine_path = format!("/api/postings/{}", mine["id"].as_str().unwrap());
    assert_eq!(
        app.send(Method::DELETE, &mine_path, Some(&ann), None)
            .await
            .status(),
        204
    );
}

async fn invalid_postings_are_422_and_bad_bodies_400(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    for body in [
        json!({"title": "", "body": "b"}),
        json!({"title": "   ", "body": "b"}),
        json!({"title": "t".repeat(201), "body": "b"}),
        json!({"title": "t", "body": "b".repeat(20_001)}),
    ] {
        assert_problem(
            app.send(Method::POST, "/api/postings", Some(&ann), Some(&body))
                .await,
            422,
        )
        .await;
    }
    // Exactly at the limits is fine.
    let body = json!({"title": "t".repeat(200), "body": "b".repeat(20_000)});
    assert_eq!(
        app.send(Method::POST, "/api/postings", Some(&ann), Some(&body))
            .await
            .status(),
        201
    );
    for body in [
        json!({"title": "t"}),
        json!({"title": 1, "body": "b"}),
        json!({"title": "t", "body": "b", "author": "x"}),
        json!([]),
    ] {
        assert_problem(
            app.send(Method::POST, "/api/postings", Some(&ann), Some(&body))
                .await,
            400,
        )
        .await;
    }
    let response = app
        .client
        .post(app.url("/api/postings"))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let list: Value = app.get("/api/postings").await.json().await.unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the valid posting exists"
    );
}

async fn hostile_text_is_stored_verbatim(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("<b>Ann</b>");
    for title in [
        "'); DROP TABLE postings; --",
        "<script>alert(1)</script>",
        "글쓰기 🦀",
        "tab\there",
    ] {
        let body = json!({"title": title, "body": "\" OR 1=1 --"});
        let response = app
            .send(Method::POST, "/api/postings", Some(&ann), Some(&body))
            .await;
        assert_eq!(response.status(), 201, "{title:?}");
        let posting: Value = response.json().await.unwrap();
        assert_eq!(posting["title"], title);
        assert_eq!(posting["author"]["display_name"], "<b>Ann</b>");
    }
    // NUL cannot be stored (Postgres refuses it): a clear 422, not a 500.
    let nul = json!({"title": "a\u{0}b", "body": "b"});
    assert_problem(
        app.send(Method::POST, "/api/postings", Some(&ann), Some(&nul))
            .await,
        422,
    )
    .await;
    let list: Value = app.get("/api/postings").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
}

async fn unknown_ids_are_404(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/api/postings/{missing}"),
        "/api/postings/not-a-uuid".to_owned(),
        format!("/api/postings/{missing}/comments"),
    ] {
        assert_problem(app.get(&path).await, 404).await;
    }
    let edit = json!({"title": "x"});
    assert_problem(
        app.send(
            Method::PATCH,
            &format!("/api/postings/{missing}"),
            Some(&ann),
            Some(&edit),
        )
        .await,
        404,
    )
    .await;
    assert_problem(
        app.send(
            Method::DELETE,
            &format!("/api/postings/{missing}"),
            Some(&ann),
            None,
        )
        .await,
        404,
    )
    .await;
    assert_problem(app.comment(&ann, &missing.to_string(), "hi").await, 404).await;
}
