//! Account erasure as a saga, through `dure up` with real processes: it
//! waits for a paused participant, fails visibly past its deadline and can
//! be retried, and completes exactly once while the orchestrator and every
//! participant are killed mid-saga.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::system::*;

const ADMIN_PASSWORD: &str = "admin password for tests";
const PARTICIPANTS: [&str; 3] = ["notification", "posting", "reporting"];

struct Saga {
    system: System,
    client: reqwest::Client,
    admin: String,
}

impl Saga {
    async fn start(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let mut all = vec![
            ("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("DURE_ERASURE_RETRY", "1s"),
        ];
        all.extend_from_slice(env);
        let system = System::start_with_env(flags, &all);
        let client = reqwest::Client::new();
        let admin = login(&client, &system.gateway, "admin", ADMIN_PASSWORD).await;
        Self {
            system,
            client,
            admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.system.gateway)
    }

    /// A user with a posting that someone else commented on (so that
    /// notification holds a notification for them); returns (id, token,
    /// posting id).
    async fn user_with_data(&self, name: &str) -> (String, String, String) {
        let token = sign_up_and_login_as(&self.client, &self.system.gateway, name).await;
        let me: Value = self
            .client
            .get(self.url("/api/user"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let posting: Value = self
            .client
            .post(self.url("/api/postings"))
            .bearer_auth(&token)
            .json(&json!({"title": format!("{name}'s"), "body": "b"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let posting = posting["id"].as_str().unwrap().to_owned();
        let response = self
            .client
            .post(self.url(&format!("/api/postings/{posting}/comments")))
            .bearer_auth(&self.admin)
            .json(&json!({"body": "nice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        (me["id"].as_str().unwrap().to_owned(), token, posting)
    }

    async fn delete_account(&self, token: &str) {
        let response = self
            .client
            .delete(self.url("/api/user"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    /// Like a client would while identity restarts: again after a 5xx; a
    /// 401 after one means an earlier attempt was applied.
    async fn delete_account_retrying(&self, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut failed_before = false;
        loop {
            let status = self
                .client
                .delete(self.url("/api/user"))
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(599);
            match status {
                204 => return,
                401 if failed_before => return,
                500.. => failed_before = true,
                other => panic!("DELETE /api/user: {other}"),
            }
            assert!(Instant::now() < deadline, "identity did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn deletion(&self, user_id: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(&format!("/api/admin/users/{user_id}/deletion")))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for_state(&self, user_id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.deletion(user_id).await;
            if status == 200 && body["state"] == state {
                return body;
            }
            assert!(Instant::now() < deadline, "not {state}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Events of `producer`'s feed, read from its instances' own address
    /// (the feed is internal: never through the gateway).
    async fn feed(&self, producer: &str) -> Vec<Value> {
        let catalog: Value = self
            .client
            .get(format!("{}/v1/services/{producer}", self.system.registry))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let address = catalog["instances"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no {producer}: {catalog}"))
            .to_owned();
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = self
                .client
                .get(format!(
                    "{address}/internal/events?after={after}&limit=1000"
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let batch = page["events"].as_array().unwrap();
            if batch.is_empty() {
                return events;
            }
            after = batch.last().unwrap()["position"].as_i64().unwrap();
            events.extend(batch.iter().map(|e| e["event"].clone()));
        }
    }

    /// How often each user was erased by identity and by each participant,
    /// as the producers' own histories record it.
    async fn erasures(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for event in self.feed("identity").await {
            if event["type"] == "user.erased" {
                let user = event["data"]["user_id"].as_str().unwrap().to_owned();
                *counts.entry(("identity".to_owned(), user)).or_default() += 1;
            }
        }
        for service in PARTICIPANTS {
            for event in self.feed(service).await {
                if event["type"] == "user.erasure.confirmed" && event["data"]["applied"] == true {
                    let user = event["data"]["user_id"].as_str().unwrap().to_owned();
                    *counts.entry((service.to_owned(), user)).or_default() += 1;
                }
            }
        }
        counts
    }

    fn pid(&self, service: &str) -> i32 {
        *self.system.pids(service).last().unwrap()
    }

    /// What each participant shows of an erased user.
    async fn assert_erased(&self, user_id: &str, name: &str, posting: &str) {
        let read: Value = self
            .client
            .get(self.url(&format!("/api/postings/{posting}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["author"]["display_name"], "(deleted user)", "{read}");
        let top: Value = self
            .client
            .get(self.url("/api/reports/top-authors?limit=100"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let row = top["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["user_id"] == user_id)
            .unwrap_or_else(|| panic!("{top}"));
        assert_eq!(row["display_name"], "(deleted user)", "{top}");
        assert_eq!(row["postings"], 1, "{top}");
        let notifications = count(
            &self.system,
            "notification",
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1",
            user_id,
        )
        .await;
        assert_eq!(notifications, 0);
        // identity erased the email and credentials: both are free again.
        let again = self
            .client
            .post(self.url("/api/users"))
            .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 201, "{}", again.text().await.unwrap());
        let profile = self
            .client
            .get(self.url(&format!("/api/users/{user_id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(profile.status(), 404);
    }
}

async fn count(system: &System, service: &str, sql: &str, bind: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let url = format!(
        "sqlite://{}",
        system.data_dir.join(format!("{service}.db")).display()
    );
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_waits_for_a_paused_participant_and_completes_after_it_resumes() {
    waits_for_a_paused_participant(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_waits_for_a_paused_participant_over_nats() {
    let Some(nats) = nats() else { return };
    waits_for_a_paused_participant(&["--bus", &nats.url]).await;
}

/// A broker of the test's own; `None` (skip) only where none is installed
/// and CI does not require it.
fn nats() -> Option<support::TestNats> {
    let nats = support::TestNats::start();
    if nats.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is missing under CI=true"
        );
        eprintln!("nats-server is not installed: skipping the NATS variant");
    }
    nats
}

async fn waits_for_a_paused_participant(flags: &[&str]) {
    let saga = Saga::start(flags, &[]).await;
    let (ann, token, posting) = saga.user_with_data("ann").await;
    let notification = saga.pid("notification");
    kill(Pid::from_raw(notification), Signal::SIGSTOP).unwrap();
    saga.delete_account(&token).await;

    // Disabled at once: the token is refused and the password no longer works.
    let me = saga
        .client
        .get(saga.url("/api/user"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let login = saga
        .client
        .post(saga.url("/api/login"))
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);

    // The others confirm; the saga waits for notification, sending again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let waiting = loop {
        let (_, body) = saga.deletion(&ann).await;
        let steps: HashMap<String, Value> = body["steps"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| (s["service"].as_str().unwrap().to_owned(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if steps
            .get("posting")
            .is_some_and(|s| s["state"] == "confirmed")
            && steps
                .get("reporting")
                .is_some_and(|s| s["state"] == "confirmed")
            && steps["notification"]["attempts"].as_i64().unwrap() >= 2
        {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The console's events view shows the saga in flight.
    let console = format!("{}/api/events", saga.system.console);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events: Value = saga
            .client
            .get(&console)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if events["sagas"][0]["in_progress"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(Pid::from_raw(notification), Signal::SIGCONT).unwrap();
    assert_eq!(waiting["state"], "in_progress", "{waiting}");
    let notification_step = waiting["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "notification")
        .unwrap();
    assert_eq!(notification_step["state"], "pending", "{waiting}");

    let done = saga
        .wait_for_state(&ann, "completed", Duration::from_secs(15))
        .await;
    assert!(done["completed_at"].is_string(), "{done}");
    saga.assert_erased(&ann, "ann", &posting).await;

    // Admins only; a completed saga is not retried.
    let bob = sign_up_and_login_as(&saga.client, &saga.system.gateway, "bob").await;
    let as_user = saga
        .client
        .get(saga.url(&format!("/api/admin/users/{ann}/deletion")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(as_user.status(), 403);
    let retried = saga
        .client
        .post(saga.url(&format!("/api/admin/users/{ann}/deletion/retry")))
        .bearer_auth(&saga.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 409);
    let none = saga.deletion(&uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(none.0, 404);
    let counts = saga.erasures().await;
    for service in ["identity", "notification", "posting", "reporting"] {
        assert_eq!(
            counts.get(&(service.to_owned(), ann.clone())),
            Some(&1),
            "{service}: {counts:?}"
        );
    }
    saga.system.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_past_its_deadline_fails_visibly_and_an_admin_retry_completes_it() {
    let saga = Saga::start(&[], &[("DURE_ERASURE_DEADLINE", "3s")]).await;
    let (ann, token, posting) = saga.user_with_data("ann").await;
    let notification = saga.pid("notification");
    kill(Pid::from_raw(notification), Signal::SIGSTOP).unwrap();
    saga.delete_account(&token).await;
    let failed = saga
        .wait_for_state(&ann, "failed", Duration::from_secs(15))
        .await;
    let pending: Vec<&Value> = failed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{failed}");
    assert_eq!(pending[0]["service"], "notification");
    kill(Pid::from_raw(notification), Signal::SIGCONT).unwrap();
    // Resumed, notification catches up and confirms: forward recovery
    // completes even a failed saga. An admin's retry does the same for one
    // whose participant had given up; both end in `completed`.
    let retried = saga
        .client
        .post(saga.url(&format!("/api/admin/users/{ann}/deletion/retry")))
        .bearer_auth(&saga.admin)
        .send()
        .await
        .unwrap();
    assert!(
        [202, 409].contains(&retried.status().as_u16()),
        "{}",
        retried.status()
    );
    saga.wait_for_state(&ann, "completed", Duration::from_secs(15))
        .await;
    saga.assert_erased(&ann, "ann", &posting).await;
    saga.system.stop();
}

async fn sagas_survive_kills(flags: &[&str]) {
    let mut saga = Saga::start(flags, &[]).await;
    let mut users = Vec::new();
    for n in 0..8 {
        let name = format!("user{n}");
        let (id, token, posting) = saga.user_with_data(&name).await;
        users.push((id, token, posting, name));
    }
    // Each account is deleted right before one process is killed, so that
    // every kill lands while sagas are in flight.
    let victims = ["identity", "posting", "notification", "reporting"];
    for (n, (_, token, _, _)) in users.iter().enumerate() {
        saga.delete_account_retrying(token).await;
        if n % 2 == 1 {
            let victim = victims[(n / 2) % victims.len()];
            let pid = saga.pid(victim);
            kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
            // The supervisor starts it again.
            let old = format!("(pid {pid})");
            let prefix = format!("starting {victim} on ");
            assert!(
                saga.system.wait_until(
                    |l| l.starts_with(&prefix) && !l.contains(&old),
                    Duration::from_secs(30)
                ),
                "{victim} was not restarted"
            );
        }
    }
    for (id, _, _, _) in &users {
        saga.wait_for_state(id, "completed", Duration::from_secs(60))
            .await;
    }
    let counts = saga.erasures().await;
    for (id, _, _, _) in &users {
        for service in ["identity", "notification", "posting", "reporting"] {
            assert_eq!(
                counts.get(&(service.to_owned(), id.clone())),
                Some(&1),
                "{service} erased {id} not exactly once: {counts:?}"
            );
        }
    }
    let (id, _, posting, name) = &users[0];
    saga.assert_erased(id, name, posting).await;
    saga.system.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_completes_exactly_once_while_processes_are_killed_over_the_feed() {
    sagas_survive_kills(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_completes_exactly_once_while_processes_are_killed_over_nats() {
    let Some(nats) = nats() else { return };
    sagas_survive_kills(&["--bus", &nats.url]).await;
}
