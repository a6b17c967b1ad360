//! Keyset pagination: stable under concurrent inserts, strict about input.

use crate::helpers::spawn_app;
use dure_chassis::testing::{Backend, assert_problem};
use serde_json::Value;
use std::collections::HashSet;

dure_chassis::on_both_backends!(
    pages_have_no_duplicates_or_gaps_while_postings_arrive,
    author_filter_pages_only_their_postings,
    bad_limits_and_cursors_are_4xx,
);

async fn pages_have_no_duplicates_or_gaps_while_postings_arrive(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    let mut before = Vec::new();
    for n in 0..25 {
        before.push(
            app.publish(&ann, &format!("p{n}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/postings?limit=4&cursor={c}"),
            None => "/api/postings?limit=4".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        // New postings land on top, before the cursor: none shifts the chain.
        app.publish(&ann, "newcomer").await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    before.reverse();
    assert_eq!(
        seen, before,
        "every earlier posting exactly once, newest first"
    );
}

async fn author_filter_pages_only_their_postings(backend: Backend) {
    let app = spawn_app(&backend).await;
    let (ann, bob) = (app.user("Ann"), app.user("Bob"));
    for n in 0..3 {
        app.publish(&ann, &format!("ann {n}")).await;
        app.publish(&bob, &format!("bob {n}")).await;
    }
    let first: Value = app
        .get(&format!("/api/postings?author={}&limit=2", bob.id))
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!(
            "/api/postings?author={}&limit=2&cursor={cursor}",
            bob.id
        ))
        .await
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["bob 2", "bob 1", "bob 0"]);
    let nobody: Value = app
        .get(&format!("/api/postings?author={}", uuid::Uuid::now_v7()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(nobody["items"].as_array().unwrap().len(), 0);
}

async fn bad_limits_and_cursors_are_4xx(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ann = app.user("Ann");
    for _ in 0..3 {
        app.publish(&ann, "p").await;
    }
    assert_problem(app.get("/api/postings?limit=0").await, 422).await;
    assert_problem(app.get("/api/postings?limit=-5").await, 422).await;
    assert_problem(app.get("/api/postings?limit=abc").await, 400).await;
    assert_problem(app.get("/api/postings?cursor=garbage").await, 400).await;
    assert_problem(app.get("/api/postings?cursor=MXxfeA").await, 400).await;
    assert_problem(app.get("/api/postings?author=not-a-user").await, 400).await;
    // Above the cap is capped, not refused.
    let page: Value = app
        .get("/api/postings?limit=1000")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
}
