//! Comments: counted with their posting, deleted only by their author or an
//! admin, gone with their posting.

use crate::helpers::spawn_app;
use dure_chassis::testing::{Backend, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

dure_chassis::on_both_backends!(
    comments_are_listed_oldest_first_and_counted,
    only_the_comment_author_or_an_admin_deletes_it,
    comments_go_with_their_posting,
    invalid_comments_change_nothing,
);

async fn comments_are_listed_oldest_first_and_counted(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, bob) = (app.user("Ann"), app.user("Bob"));
    let posting = app.publish(&ann, "p").await;
    let id = posting["id"].as_str().unwrap();
    for (user, body) in [(&bob, "first"), (&ann, "second"), (&bob, "third")] {
        let response = app.comment(user, id, body).await;
        assert_eq!(response.status(), 201);
        let comment: Value = response.json().await.unwrap();
        assert_eq!(comment["posting_id"], id);
        assert_eq!(comment["author"]["id"], user.id.as_str());
    }
    let page: Value = app
        .get(&format!("/api/postings/{id}/comments"))
        .await
        .json()
        .await
        .unwrap();
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second", "third"]);
    let posting: Value = app
        .get(&format!("/api/postings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(posting["comment_count"], 3);

    // Paged two at a time.
    let first: Value = app
        .get(&format!("/api/postings/{id}/comments?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!(
            "/api/postings/{id}/comments?limit=2&cursor={cursor}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"][0]["body"], "third");
    assert!(second["next_cursor"].is_null());
}

async fn only_the_comment_author_or_an_admin_deletes_it(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, bob, admin) = (app.user("Ann"), app.user("Bob"), app.admin());
    let posting = app.publish(&ann, "p").await;
    let id = posting["id"].as_str().unwrap();
    let bobs: Value = app.comment(&bob, id, "bob's").await.json().await.unwrap();
    let path = format!(
        "/api/postings/{id}/comments/{}",
        bobs["id"].as_str().unwrap()
    );

    // Not even the posting's author may delete someone else's comment.
    assert_problem(app.send(Method::DELETE, &path, Some(&ann), None).await, 403).await;
    assert_problem(app.send(Method::DELETE, &path, None, None).await, 401).await;
    let posting: Value = app
        .get(&format!("/api/postings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(posting["comment_count"], 1);

    assert_eq!(
        app.send(Method::DELETE, &path, Some(&bob), None)
            .await
            .status(),
        204
    );
    assert_problem(app.send(Method::DELETE, &path, Some(&bob), None).await, 404).await;
    let again: Value = app.comment(&bob, id, "again").await.json().await.unwrap();
    let path = format!(
        "/api/postings/{id}/comments/{}",
        again["id"].as_str().unwrap()
    );
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&admin), None)
            .await
            .status(),
        204
    );
    let posting: Value = app
        .get(&format!("/api/postings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(posting["comment_count"], 0);

    // A comment id under the wrong posting is not found.
    let other = app.publish(&ann, "other").await;
    let comment: Value = app.comment(&bob, id, "here").await.json().await.unwrap();
    let wrong = format!(
        "/api/postings/{}/comments/{}",
        other["id"].as_str().unwrap(),
        comment["id"].as_str().unwrap()
    );
    assert_problem(
        app.send(Method::DELETE, &wrong, Some(&bob), None).await,
        404,
    )
    .await;
}

async fn comments_go_with_their_posting(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    let posting = app.publish(&ann, "p").await;
    let id = posting["id"].as_str().unwrap();
    app.comment(&ann, id, "c").await;
    assert_eq!(
        app.send(
            Method::DELETE,
            &format!("/api/postings/{id}"),
            Some(&ann),
            None
        )
        .await
        .status(),
        204
    );
    assert_problem(app.get(&format!("/api/postings/{id}/comments")).await, 404).await;
}

async fn invalid_comments_change_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    let posting = app.publish(&ann, "p").await;
    let id = posting["id"].as_str().unwrap();
    assert_problem(app.comment(&ann, id, "").await, 422).await;
    assert_problem(app.comment(&ann, id, &"x".repeat(5_001)).await, 422).await;
    let wrong_type = app
        .send(
            Method::POST,
            &format!("/api/postings/{id}/comments"),
            Some(&ann),
            Some(&json!({"body": 5})),
        )
        .await;
    assert_problem(wrong_type, 400).await;
    let posting: Value = app
        .get(&format!("/api/postings/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(posting["comment_count"], 0);
}
