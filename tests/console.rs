//! The operator console of a real `dure up`, through its JSON API: every
//! process listed and ready, a request's log lines found by its request id,
//! processes killed, paused, stopped and started from the console, and the
//! supervisor bringing a killed one back. And the terminal stays quiet.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::system::*;

const SERVICES: [&str; 8] = [
    "registry",
    "identity",
    "posting",
    "notice",
    "notification",
    "reporting",
    "web",
    "gateway",
];

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// GETs `url` until its JSON answer passes `check`, and answers it; fails
/// with `what` and the last answer after `within`.
async fn until(url: &str, within: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let body = get_json(url).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn resources(console: &str) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{console}/api/resources"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["resources"].as_array().unwrap().clone()
}

async fn resource(console: &str, instance: &str) -> Value {
    resources(console)
        .await
        .into_iter()
        .find(|r| r["instance_id"] == instance)
        .unwrap_or_else(|| panic!("no resource {instance}"))
}

async fn act(console: &str, instance: &str, action: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{console}/api/resources/{instance}/{action}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until `instance` is in `state` (and ready, for "running").
async fn reaches(console: &str, instance: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = resource(console, instance).await;
        if r["state"] == state && (state != "running" || r["ready"] == true) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{instance} never reached {state}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_and_acts_on_every_process() {
    let mut system = System::start(&[]);
    let console = system.console.clone();
    assert!(
        system
            .seen
            .iter()
            .any(|l| l.starts_with("console ") && l.contains(&console) && l.ends_with("ready")),
        "the ready table lists the console: {:?}",
        system.seen
    );

    // Every process, with its pid, figures and lease.
    let listed = resources(&console).await;
    let names: Vec<&str> = listed
        .iter()
        .map(|r| r["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, SERVICES);
    for r in &listed {
        assert!(r["pid"].as_u64().is_some_and(|p| p > 0), "{r}");
        assert_eq!(r["ready"], true, "{r}");
        assert_eq!(r["restarts"], 0, "{r}");
    }
    let posting = reaches(&console, "posting", "running", Duration::from_secs(10)).await;
    assert!(
        posting["rss_bytes"].as_u64().is_some_and(|b| b > 1_000_000),
        "{posting}"
    );
    let leased = reaches(&console, "posting", "running", Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut leased = leased;
    while leased["lease"].is_null() {
        assert!(
            Instant::now() < deadline,
            "posting's lease never shown: {leased}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        leased = resource(&console, "posting").await;
    }
    assert!(leased["lease"].as_str().unwrap().starts_with("posting-"));

    // A request through the gateway is found in the logs by its id, in the
    // gateway's and in posting's lines.
    let request_id = "console-test-request-1";
    let answer = reqwest::Client::new()
        .get(format!("{}/api/postings", system.gateway))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let processes = |found: &Value| -> Vec<String> {
        found["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["process"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = until(
        &format!("{console}/api/logs?request_id={request_id}"),
        Duration::from_secs(5),
        "request lines not found",
        |found| {
            let seen = processes(found);
            seen.iter().any(|p| p == "gateway") && seen.iter().any(|p| p == "posting")
        },
    )
    .await;
    let line = &found["lines"][0];
    assert_eq!(line["request_id"], request_id);
    assert!(line["time"].as_str().unwrap().starts_with("20"), "{line}");
    let warnings: Value = reqwest::get(format!("{console}/api/logs?level=warn&process=posting"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        warnings["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "{warnings}"
    );

    // Kill posting: the supervisor starts it again, with a new pid.
    let old_pid = posting["pid"].as_u64().unwrap();
    assert_eq!(act(&console, "posting", "kill").await, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        let r = resource(&console, "posting").await;
        if r["pid"].as_u64().is_some_and(|p| p != old_pid)
            && r["state"] == "running"
            && r["ready"] == true
        {
            break r;
        }
        assert!(Instant::now() < deadline, "posting did not come back: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(back["restarts"], 1);
    let listed = reqwest::get(format!("{}/api/postings", system.gateway))
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "the system recovered");
    assert!(system.wait_for("restarting posting", Duration::from_secs(5)));

    // Pause and resume, stop and start; actions that do not apply are 409.
    assert_eq!(act(&console, "notice", "pause").await, 202);
    reaches(&console, "notice", "paused", Duration::from_secs(5)).await;
    assert_eq!(act(&console, "notice", "pause").await, 409);
    assert_eq!(act(&console, "notice", "resume").await, 202);
    reaches(&console, "notice", "running", Duration::from_secs(10)).await;
    assert_eq!(act(&console, "notice", "stop").await, 202);
    let stopped = reaches(&console, "notice", "stopped", Duration::from_secs(5)).await;
    assert!(stopped["pid"].is_null());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        resource(&console, "notice").await["state"],
        "stopped",
        "stays down"
    );
    assert_eq!(act(&console, "notice", "start").await, 202);
    reaches(&console, "notice", "running", Duration::from_secs(20)).await;
    assert_eq!(act(&console, "notice", "explode").await, 404);
    assert_eq!(act(&console, "nobody", "kill").await, 404);

    // Another site cannot press the buttons, nor reach it by DNS rebinding.
    let forged = reqwest::Client::new()
        .post(format!("{console}/api/resources/posting/kill"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let rebound = reqwest::Client::new()
        .get(format!("{console}/api/resources"))
        .header("host", "evil.example:8090")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    assert_eq!(resource(&console, "posting").await["restarts"], 1);

    // The pages render, with the console's headers.
    let page = reqwest::get(format!("{console}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        !page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("unsafe-inline")
    );
    let html = page.text().await.unwrap();
    for service in SERVICES {
        assert!(
            html.contains(&format!("data-instance=\"{service}\"")),
            "{service}"
        );
    }
    let logs = reqwest::get(format!("{console}/logs?q=ready"))
        .await
        .unwrap();
    assert_eq!(logs.status(), 200);
    assert!(logs.text().await.unwrap().contains("posting ready"));
    drop(system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_system_keeps_the_terminal_quiet() {
    let mut system = System::start(&[]);
    // Requests are logged by every process, but not shown.
    let client = reqwest::Client::new();
    for _ in 0..20 {
        client
            .get(format!("{}/api/postings", system.gateway))
            .send()
            .await
            .unwrap();
    }
    let before = system.seen.len();
    // Ten seconds of feed long-polls, heartbeats and readiness checks.
    system.wait_for("a line that is never printed", Duration::from_secs(10));
    let printed: Vec<String> = system.seen[before..].to_vec();
    assert!(printed.len() <= 5, "{} lines: {printed:#?}", printed.len());
    assert!(
        !printed.iter().any(|l| l.contains(" request ")),
        "{printed:#?}"
    );
    // The console has them all.
    let found: Value = reqwest::get(format!(
        "{}/api/logs?process=gateway&q=/api/postings",
        system.console
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(found["lines"].as_array().unwrap().len() >= 20, "{found}");
    drop(system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comments_trace_crosses_three_processes_in_the_console() {
    let system = System::start_with_env(&[], &[("OTEL_BSP_SCHEDULE_DELAY", "200")]);
    let (gateway, console) = (system.gateway.clone(), system.console.clone());
    let client = reqwest::Client::new();
    let ann = sign_up_and_login_as(&client, &gateway, "ann").await;
    let bob = sign_up_and_login_as(&client, &gateway, "bob").await;
    let posting: Value = client
        .post(format!("{gateway}/api/postings"))
        .bearer_auth(&ann)
        .json(&serde_json::json!({"title": "Traced", "body": "b"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_id = "console-trace-1";
    let comment = client
        .post(format!(
            "{gateway}/api/postings/{}/comments",
            posting["id"].as_str().unwrap()
        ))
        .bearer_auth(&bob)
        .header("x-request-id", request_id)
        .json(&serde_json::json!({"body": "Found you"}))
        .send()
        .await
        .unwrap();
    assert_eq!(comment.status(), 201);

    // The trace, found by the request's id, reaches notification through
    // the event (posting's outbox → notification's consumer).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (trace_id, spans) = loop {
        let found: Value = reqwest::get(format!("{console}/api/traces?request_id={request_id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(trace) = found["traces"].as_array().and_then(|t| t.first()) {
            let id = trace["trace_id"].as_str().unwrap().to_owned();
            let spans: Value = reqwest::get(format!("{console}/api/traces/{id}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let spans = spans["spans"].as_array().unwrap().clone();
            if spans
                .iter()
                .any(|s| s["service"] == "notification" && s["kind"] == "consumer")
            {
                // The gateway names its span by the route prefix it matched.
                assert_eq!(trace["root"], "POST /api/postings", "{trace}");
                assert!(
                    spans.iter().any(|s| s["service"] == "posting"
                        && s["name"] == "POST /api/postings/{id}/comments"),
                    "{spans:?}"
                );
                break (id, spans);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace reaching notification: {found}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for service in ["gateway", "posting", "notification"] {
        assert!(
            spans.iter().any(|s| s["service"] == service),
            "nothing from {service}"
        );
    }
    for span in &spans {
        assert!(span["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(span["start"].as_str().unwrap().starts_with("20"), "{span}");
    }

    // Its log lines carry its trace id.
    let lines: Value = reqwest::get(format!(
        "{console}/api/logs?trace_id={trace_id}&level=trace"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        lines["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["process"] == "posting"),
        "{lines}"
    );

    // The topology seen: the gateway calls posting; posting feeds notification.
    let topology: Value = reqwest::get(format!("{console}/api/topology"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edges = topology["edges"].as_array().unwrap();
    let has = |from: &str, to: &str, kind: &str| {
        edges
            .iter()
            .any(|e| e["from"] == from && e["to"] == to && e["kind"] == kind)
    };
    assert!(has("gateway", "posting", "call"), "{topology}");
    assert!(has("posting", "notification", "event"), "{topology}");

    // Metrics scraped from every process: posting's traffic per route.
    until(
        &format!("{console}/api/metrics"),
        Duration::from_secs(15),
        "no traffic for posting",
        |metrics| {
            metrics["routes"].as_array().unwrap().iter().any(|r| {
                r["instance_id"] == "posting"
                    && r["route"] == "/api/postings/{id}/comments"
                    && r["rate"].as_f64().unwrap() > 0.0
                    && r["p99_ms"].as_f64().is_some()
            })
        },
    )
    .await;

    // Events: posting's outbox position, notification caught up with it.
    let caught_up = |events: &Value| -> Option<Value> {
        let last = events["producers"]
            .as_array()?
            .iter()
            .find(|p| p["service"] == "posting")?["last_position"]
            .as_u64()?;
        let consumer = events["consumers"]
            .as_array()?
            .iter()
            .find(|c| c["service"] == "notification" && c["source"] == "posting")?;
        (last >= 2 && consumer["lag"] == 0.0 && consumer["position"].as_u64() == Some(last))
            .then(|| consumer.clone())
    };
    let events = until(
        &format!("{console}/api/events"),
        Duration::from_secs(15),
        "events not caught up",
        |events| caught_up(events).is_some(),
    )
    .await;
    assert_eq!(caught_up(&events).unwrap()["failures"], 0.0);
    for page in ["/metrics", "/events", "/topology", "/traces"] {
        let answer = reqwest::get(format!("{console}{page}")).await.unwrap();
        assert_eq!(answer.status(), 200, "{page}");
    }

    // And the waterfall page draws it.
    let page = reqwest::get(format!("{console}/traces/{trace_id}"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<svg") && html.contains("notification: "),
        "{html}"
    );
    drop(system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_console_needs_its_token_and_still_gets_the_traces() {
    let port = support::free_port();
    let system = System::start_with_env(
        &["--console", &format!("0.0.0.0:{port}")],
        &[
            ("DURE_CONSOLE_TOKEN", "console-test-token"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let console = format!("http://127.0.0.1:{port}");
    assert!(
        system
            .seen
            .iter()
            .any(|l| l.contains("/?token=console-test-token")),
        "the ready table shows the console's address with its token: {:?}",
        system.seen
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = client
        .get(format!("{console}/api/resources"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = client
        .get(format!("{console}/api/resources"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let admitted = client
        .get(format!("{console}/api/resources"))
        .bearer_auth("console-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    // Opening the printed address sets the cookie, then the page works.
    let opened = client
        .get(format!("{console}/?token=console-test-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = client
        .get(format!("{console}/"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // The processes send their spans with the token, so traces arrive.
    reqwest::get(format!("{}/api/postings", system.gateway))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let traces: Value = client
            .get(format!("{console}/api/traces?service=posting"))
            .bearer_auth("console-test-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !traces["traces"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no traces arrived: {traces}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(system);
}
