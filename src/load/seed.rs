//! What a run creates before it measures: its own users (signed in) and
//! postings to read and comment on. Names carry a random run id, so runs
//! against the same system do not collide.

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// Postings created at once while seeding.
const SEED_CONCURRENCY: usize = 8;

/// The users and postings of one run.
#[derive(Debug)]
pub struct World {
    /// `Bearer …` header values, one per user.
    pub authorizations: Vec<String>,
    pub postings: Vec<String>,
}

pub async fn seed(client: &Client, url: &str, users: u32, postings: u32) -> anyhow::Result<World> {
    let run: u32 = rand::thread_rng().r#gen();
    let mut authorizations = Vec::new();
    for n in 0..users {
        let username = format!("load_{run:08x}_{n}");
        // Random per run; the accounts are only used by this run.
        let password = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
        let created = client
            .post(format!("{url}/api/users"))
            .json(&json!({
                "username": username,
                "email": format!("{username}@load.dure.invalid"),
                "password": password,
                "display_name": format!("Load {n}"),
            }))
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the gateway at {url} (is `dure up` running?)")
            })?;
        if created.status() == StatusCode::TOO_MANY_REQUESTS {
            anyhow::bail!(
                "identity refused the run's sign-ups: it allows DURE_SIGNUPS_PER_ADDRESS \
                 (default 20) per client address in 5 minutes; wait, use fewer --users, or \
                 start the system with a higher DURE_SIGNUPS_PER_ADDRESS"
            );
        }
        expect(created, StatusCode::CREATED, "signing up a user").await?;
        let login = client
            .post(format!("{url}/api/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await?;
        let tokens = expect(login, StatusCode::OK, "logging in").await?;
        let token = tokens["access_token"]
            .as_str()
            .context("the login answer has no access_token")?;
        authorizations.push(format!("Bearer {token}"));
    }
    let created: Vec<String> = futures_util::stream::iter(0..postings)
        .map(|n| {
            let authorization = authorizations[n as usize % authorizations.len()].clone();
            async move {
                let answer = client
                    .post(format!("{url}/api/postings"))
                    .header("authorization", authorization)
                    .json(&json!({
                        "title": format!("Load posting {n}"),
                        "body": "Written by dure load to read and comment on.",
                    }))
                    .send()
                    .await?;
                let posting = expect(answer, StatusCode::CREATED, "creating a posting").await?;
                posting["id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("the created posting has no id")
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(World {
        authorizations,
        postings: created,
    })
}

/// The JSON body of an answer with the `wanted` status, or an error that
/// says what the system answered instead.
async fn expect(answer: Response, wanted: StatusCode, doing: &str) -> anyhow::Result<Value> {
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if status != wanted {
        let detail = body["detail"]
            .as_str()
            .or(body["title"].as_str())
            .unwrap_or("");
        anyhow::bail!("{doing}: the system answered {status} {detail}");
    }
    Ok(body)
}
