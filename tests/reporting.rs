//! The reporting read model through `dure up`: reports that match what was
//! done, admin only, and a rebuild by replay that gives the same answers,
//! also while events keep arriving and after the producers' housekeeping.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::time::Duration;
use support::system::*;

const ADMIN_PASSWORD: &str = "admin password for tests";

struct Api {
    client: reqwest::Client,
    gateway: String,
    registry: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.gateway))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, body) = self
            .send(reqwest::Method::POST, path, token, Some(body))
            .await;
        assert_eq!(status, 201, "POST {path}: {body}");
        body
    }

    async fn delete(&self, path: &str, token: &str) {
        let (status, body) = self.send(reqwest::Method::DELETE, path, token, None).await;
        assert_eq!(status, 204, "DELETE {path}: {body}");
    }

    /// The three reports, without what says which generation answered.
    async fn reports(&self, admin: &str) -> Value {
        let mut summary = self.get("/api/reports/summary", admin).await;
        summary.as_object_mut().unwrap().remove("generation");
        json!({
            "summary": summary,
            "activity": self.get("/api/reports/activity?bucket=hour", admin).await["buckets"],
            "top": self.get("/api/reports/top-authors?limit=100", admin).await["items"],
        })
    }

    /// The last position of `producer`'s feed, from one of its instances
    /// (the feed is internal: never through the gateway).
    async fn head(&self, producer: &str) -> Option<Value> {
        let catalog: Value = self
            .client
            .get(format!("{}/v1/services/{producer}", self.registry))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let address = catalog["instances"][0]["address"]
            .as_str()
            .unwrap()
            .to_owned();
        if !address.starts_with("http") {
            // One process: the feed has no socket; the counts must do.
            return None;
        }
        let page: Value = self
            .client
            .get(format!(
                "{address}/internal/events?after={}&limit=1",
                i64::MAX
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Some(page["last_position"].clone())
    }

    /// Waits until the totals are `wanted` and the model has applied every
    /// producer's whole feed, so that later answers can be compared.
    async fn wait_for_totals(&self, admin: &str, wanted: Value) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = self.get("/api/reports/summary", admin).await;
            let mut caught_up = true;
            for producer in ["identity", "posting", "notice"] {
                if let Some(head) = self.head(producer).await {
                    caught_up &= last["as_of"][producer] == head;
                }
            }
            if caught_up
                && ["users", "postings", "comments", "notices"]
                    .iter()
                    .all(|k| last[k] == wanted[k])
            {
                return last;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wanted {wanted}, last {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_rebuild(&self, admin: &str, generation: i64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let last = self.get("/api/reports/rebuild", admin).await;
            if last["state"] == "idle" && last["live_generation"] == generation {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rebuild did not finish: {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn start(extra_env: &[(&str, &str)], flags: &[&str]) -> (System, Api, String) {
    let mut env = vec![("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    env.extend_from_slice(extra_env);
    let system = System::start_with_env(flags, &env);
    let api = Api {
        client: reqwest::Client::new(),
        gateway: system.gateway.clone(),
        registry: system.registry.clone(),
    };
    let admin = login(&api.client, &api.gateway, "admin", ADMIN_PASSWORD).await;
    (system, api, admin)
}

/// Ann posts twice, Bob comments three times and posts once; some of it is
/// deleted again, and the admin publishes a notice.
async fn community(api: &Api, admin: &str) -> (String, String) {
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let bob = sign_up_and_login_as(&api.client, &api.gateway, "bob").await;
    let first = api
        .post("/api/postings", &ann, json!({"title": "One", "body": "b"}))
        .await;
    api.post("/api/postings", &ann, json!({"title": "Two", "body": "b"}))
        .await;
    let id = first["id"].as_str().unwrap();
    for n in 0..3 {
        api.post(
            &format!("/api/postings/{id}/comments"),
            &bob,
            json!({"body": format!("c{n}")}),
        )
        .await;
    }
    let gone = api
        .post(
            &format!("/api/postings/{id}/comments"),
            &ann,
            json!({"body": "x"}),
        )
        .await;
    api.delete(
        &format!(
            "/api/postings/{id}/comments/{}",
            gone["id"].as_str().unwrap()
        ),
        &ann,
    )
    .await;
    let bobs = api
        .post("/api/postings", &bob, json!({"title": "Gone", "body": "b"}))
        .await;
    api.post(
        &format!("/api/postings/{}/comments", bobs["id"].as_str().unwrap()),
        &ann,
        json!({"body": "goes with it"}),
    )
    .await;
    api.delete(
        &format!("/api/postings/{}", bobs["id"].as_str().unwrap()),
        &bob,
    )
    .await;
    api.post("/api/notice", admin, json!({"title": "Hello", "body": "b"}))
        .await;
    let dropped = api
        .post("/api/notice", admin, json!({"title": "Oops", "body": "b"}))
        .await;
    api.delete(
        &format!("/api/notice/{}", dropped["id"].as_str().unwrap()),
        admin,
    )
    .await;
    (ann, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_what_was_done_and_a_rebuild_gives_the_same() {
    let (system, api, admin) = start(&[], &[]).await;
    let (ann, _bob) = community(&api, &admin).await;

    let summary = api
        .wait_for_totals(
            &admin,
            json!({"users": 3, "postings": 2, "comments": 3, "notices": 1}),
        )
        .await;
    for producer in ["identity", "posting", "notice"] {
        assert!(
            summary["as_of"][producer].as_i64().unwrap() > 0,
            "{summary}"
        );
    }
    let today = api.get("/api/reports/activity?bucket=day", &admin).await;
    let buckets = today["buckets"].as_array().unwrap();
    // 30 days back, from the start of that day: 31 buckets, today's last.
    assert_eq!(buckets.len(), 31, "{today}");
    let last = buckets.last().unwrap();
    assert_eq!(
        (&last["signups"], &last["postings"], &last["comments"]),
        (&json!(3), &json!(2), &json!(3)),
        "{today}"
    );
    let top = api.get("/api/reports/top-authors", &admin).await;
    assert_eq!(top["items"][0]["display_name"], "bob", "{top}");
    assert_eq!(top["items"][0]["comments"], 3, "{top}");
    assert_eq!(top["items"][1]["display_name"], "ann", "{top}");
    assert_eq!(top["items"][1]["postings"], 2, "{top}");

    // Admins only, and bad input is a clear 400.
    for path in [
        "/api/reports/summary",
        "/api/reports/activity",
        "/api/reports/top-authors",
        "/api/reports/rebuild",
    ] {
        let (status, _) = api.send(reqwest::Method::GET, path, &ann, None).await;
        assert_eq!(status, 403, "{path}");
        let (status, _) = api.send(reqwest::Method::GET, path, "", None).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &ann, None)
        .await;
    assert_eq!(status, 403);
    for path in [
        "/api/reports/activity?bucket=week",
        "/api/reports/activity?from=yesterday",
        "/api/reports/top-authors?limit=0",
        "/api/reports/top-authors?limit=x",
        "/api/reports/top-authors?limit=101",
    ] {
        let (status, body) = api.send(reqwest::Method::GET, path, &admin, None).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    // Ranges the schema allows are answered: an empty one, and a long one
    // cut to its last 1000 buckets.
    let (status, body) = api
        .send(
            reqwest::Method::GET,
            "/api/reports/activity?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buckets"].as_array().map(Vec::len), Some(0), "{body}");
    let (status, body) = api
        .send(
            reqwest::Method::GET,
            "/api/reports/activity?bucket=hour&from=2000-01-01T00:00:00Z",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let buckets = body["buckets"].as_array().map_or(0, Vec::len);
    assert!((999..=1000).contains(&buckets), "{buckets} buckets");

    let before = api.reports(&admin).await;
    // With posting paused the replay cannot finish: the rebuild stays
    // running, a second one is refused, and reads are still answered from
    // the live generation.
    let posting = system.pids("posting")[0];
    kill(Pid::from_raw(posting), Signal::SIGSTOP).unwrap();
    let (status, started) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    assert_eq!(status, 202, "{started}");
    let (status, refused) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    let during = api.reports(&admin).await;
    let running = api.get("/api/reports/rebuild", &admin).await;
    kill(Pid::from_raw(posting), Signal::SIGCONT).unwrap();
    assert_eq!(status, 409, "{refused}");
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(during, before);
    api.wait_for_rebuild(&admin, started["generation"].as_i64().unwrap())
        .await;
    assert_eq!(api.reports(&admin).await, before);
    system.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_events_arrive_equals_the_live_model() {
    let (system, api, admin) = start(&[], &["--single-process"]).await;
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let posting = api
        .post("/api/postings", &ann, json!({"title": "Busy", "body": "b"}))
        .await;
    let id = posting["id"].as_str().unwrap().to_owned();
    for n in 0..150 {
        api.post(
            &format!("/api/postings/{id}/comments"),
            &ann,
            json!({"body": format!("before {n}")}),
        )
        .await;
    }
    let writer = {
        let (client, gateway, ann, id) = (
            api.client.clone(),
            api.gateway.clone(),
            ann.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            let mut acknowledged = 0;
            for n in 0..150 {
                let response = client
                    .post(format!("{gateway}/api/postings/{id}/comments"))
                    .bearer_auth(&ann)
                    .json(&json!({"body": format!("during {n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                acknowledged += 1;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, started) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    assert_eq!(status, 202, "{started}");
    let acknowledged = writer.await.unwrap();
    api.wait_for_rebuild(&admin, started["generation"].as_i64().unwrap())
        .await;
    let summary = api
        .wait_for_totals(
            &admin,
            json!({"users": 2, "postings": 1, "comments": 150 + acknowledged, "notices": 0}),
        )
        .await;
    assert_eq!(summary["generation"], started["generation"]);
    // Once more from scratch: the same again.
    let live = api.reports(&admin).await;
    let (status, again) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    assert_eq!(status, 202, "{again}");
    api.wait_for_rebuild(&admin, again["generation"].as_i64().unwrap())
        .await;
    assert_eq!(api.reports(&admin).await, live);
    system.stop();
}

/// Backdates every outbox row of `service` past the old 7-day pruning age.
async fn age_history(system: &System, service: &str) {
    sqlx::any::install_default_drivers();
    let url = format!(
        "sqlite://{}",
        system.data_dir.join(format!("{service}.db")).display()
    );
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE outbox SET sequenced_at = '2026-01-01T00:00:00.000000Z', published_at = '2026-01-01T00:00:00.000000Z'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Kills `service` and waits until the supervisor has it serving again; the
/// outbox prunes once at start.
async fn restart(system: &mut System, api: &Api, service: &str) {
    let pid = *system.pids(service).last().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert!(
        system.wait_until(
            |l| l.starts_with(&format!("starting {service} on "))
                && !l.contains(&format!("(pid {pid})")),
            Duration::from_secs(20)
        ),
        "{service} was not restarted"
    );
    let _ = api;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_outlives_housekeeping_so_a_rebuild_stays_complete() {
    let (mut system, api, admin) = start(&[], &[]).await;
    community(&api, &admin).await;
    api.wait_for_totals(
        &admin,
        json!({"users": 3, "postings": 2, "comments": 3, "notices": 1}),
    )
    .await;
    let before = api.reports(&admin).await;
    age_history(&system, "posting").await;
    restart(&mut system, &api, "posting").await;
    let (status, started) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    assert_eq!(status, 202, "{started}");
    api.wait_for_rebuild(&admin, started["generation"].as_i64().unwrap())
        .await;
    assert_eq!(api.reports(&admin).await, before);
    system.stop();

    // Where an operator chose a finite retention, the pruned history is
    // noticed and the rebuild refused, instead of an incomplete model.
    let (mut system, api, admin) = start(&[("DURE_EVENT_RETENTION", "7d")], &[]).await;
    community(&api, &admin).await;
    age_history(&system, "posting").await;
    restart(&mut system, &api, "posting").await;
    let (status, body) = api
        .send(reqwest::Method::POST, "/api/reports/rebuild", &admin, None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("posting's event history was pruned"),
        "{body}"
    );
    let status: Value = api.get("/api/reports/rebuild", &admin).await;
    assert_eq!(status["state"], "idle");
    system.stop();
}
