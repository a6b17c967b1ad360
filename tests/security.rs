//! The OWASP API Security Top 10 (2023), tried against a real `dure up`
//! through its gateway, as an attacker would (docs/security.md says which
//! test covers which risk). Each test runs its own system on free ports.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dure_chassis::auth::Role;
use dure_chassis::testing::TokenIssuer;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;
use support::system::*;

const ADMIN_PASSWORD: &str = "admin password 1";

/// Requests through the gateway, answers as (status, headers, JSON body).
struct Api {
    client: reqwest::Client,
    gateway: String,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Api {
    fn new(system: &System) -> Self {
        Self {
            client: reqwest::Client::new(),
            gateway: system.gateway.clone(),
        }
    }

    async fn send(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.gateway));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(body)).await
    }
}

fn start() -> System {
    System::start_with_env(&[], &[("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD)])
}

/// Every key of every object in `value`, however deep.
fn keys(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                found.push(key.clone());
                keys(inner, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, found)),
        _ => {}
    }
}

/// API1 broken object level authorization, API3 broken object property
/// level authorization, API5 broken function level authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_reach_another_users_objects_or_admin_functions() {
    let system = start();
    let api = Api::new(&system);
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let bob = sign_up_and_login_as(&api.client, &api.gateway, "bob").await;
    let admin = login(&api.client, &api.gateway, "admin", ADMIN_PASSWORD).await;
    let ann_id = api.get("/api/user", &ann).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = api.get("/api/user", &bob).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Postings and comments: only their author (or an admin) changes them.
    let posting = api
        .post(
            "/api/postings",
            &ann,
            json!({"title": "Ann's", "body": "mine"}),
        )
        .await
        .body;
    let posting_path = format!("/api/postings/{}", posting["id"].as_str().unwrap());
    let comment = api
        .post(
            &format!("{posting_path}/comments"),
            &ann,
            json!({"body": "also mine"}),
        )
        .await
        .body;
    let comment_path = format!(
        "{posting_path}/comments/{}",
        comment["id"].as_str().unwrap()
    );
    let edit = json!({"title": "Bob's now"});
    let answer = api
        .send(Method::PATCH, &posting_path, &bob, Some(edit.clone()))
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert_eq!(
        api.send(Method::DELETE, &posting_path, &bob, None)
            .await
            .status,
        403
    );
    assert_eq!(
        api.send(Method::DELETE, &comment_path, &bob, None)
            .await
            .status,
        403
    );
    let kept = api.get(&posting_path, "").await.body;
    assert_eq!(
        (kept["title"].as_str(), kept["comment_count"].as_i64()),
        (Some("Ann's"), Some(1))
    );

    // Mass assignment: no author, id or role can be set by the caller.
    for body in [
        json!({"title": "t", "body": "b", "author": {"id": bob_id, "display_name": "Bob"}}),
        json!({"title": "t", "body": "b", "id": "01a2b3c4-0000-7000-8000-000000000000"}),
    ] {
        let answer = api.post("/api/postings", &ann, body).await;
        assert_eq!(answer.status, 400, "{}", answer.text);
    }
    let answer = api
        .send(
            Method::PATCH,
            &posting_path,
            &ann,
            Some(json!({"author": {"id": bob_id}})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    for body in [
        json!({"role": "admin"}),
        json!({"id": bob_id}),
        json!({"display_name": "x", "role": "admin"}),
    ] {
        let answer = api.send(Method::PATCH, "/api/user", &ann, Some(body)).await;
        assert_eq!(answer.status, 400, "{}", answer.text);
    }
    let me = api.get("/api/user", &ann).await.body;
    assert_eq!(
        (me["role"].as_str(), me["id"].as_str()),
        (Some("user"), Some(ann_id.as_str()))
    );
    let answer = api
        .post(
            "/api/users",
            "",
            json!({"username": "mallory", "email": "m@example.com", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    let answer = api
        .post(
            "/api/login",
            "",
            json!({"username": "mallory", "password": PASSWORD}),
        )
        .await;
    assert_eq!(answer.status, 401, "the refused sign-up created no account");

    // Notifications are the recipient's alone.
    let bobs = api
        .post(
            "/api/postings",
            &bob,
            json!({"title": "Bob's", "body": "b"}),
        )
        .await
        .body;
    api.post(
        &format!("/api/postings/{}/comments", bobs["id"].as_str().unwrap()),
        &ann,
        json!({"body": "hi Bob"}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || {
            let api = &api;
            let bob = &bob;
            async move { api.get("/api/notifications", bob).await.body["items"][0].is_object() }
        })
        .await,
        "bob is notified"
    );
    let notification = api.get("/api/notifications", &bob).await.body["items"][0].clone();
    let id = notification["id"].as_str().unwrap();
    let anns = api.get("/api/notifications", &ann).await.body;
    assert!(
        !anns.to_string().contains(id),
        "ann sees only her own notifications: {anns}"
    );
    let answer = api
        .send(
            Method::POST,
            &format!("/api/notifications/{id}/read"),
            &ann,
            None,
        )
        .await;
    assert_eq!(
        answer.status, 404,
        "another user's notification does not exist for ann"
    );
    assert_eq!(
        api.get("/api/notifications?unread=true", &bob).await.body["unread_count"],
        1
    );

    // Public views hold no email, hash or other internal field.
    let mut seen = Vec::new();
    for path in [
        "/api/postings".to_owned(),
        posting_path.clone(),
        format!("{posting_path}/comments"),
        format!("/api/users/{bob_id}"),
        "/api/home".to_owned(),
    ] {
        let answer = api.get(&path, &ann).await;
        assert_eq!(answer.status, 200, "{path}");
        keys(&answer.body, &mut seen);
        assert!(
            !answer.text.contains("bob@example.com"),
            "{path}: {}",
            answer.text
        );
    }
    for internal in ["email", "password", "password_hash", "role", "deleted_at"] {
        assert!(
            !seen.iter().any(|k| k == internal),
            "`{internal}` in a public view"
        );
    }
    let profile = api.get(&format!("/api/users/{bob_id}"), &ann).await.body;
    let mut fields: Vec<&String> = profile.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["display_name", "id", "username"]);

    // Admin functions: refused to a user, served to the admin.
    let notice = api
        .post("/api/notice", &admin, json!({"title": "n", "body": "b"}))
        .await
        .body;
    let notice_path = format!("/api/notice/{}", notice["id"].as_str().unwrap());
    let admin_only = [
        (
            Method::POST,
            "/api/notice".to_owned(),
            Some(json!({"title": "t", "body": "b"})),
        ),
        (
            Method::PATCH,
            notice_path.clone(),
            Some(json!({"title": "t"})),
        ),
        (Method::DELETE, notice_path.clone(), None),
        (Method::GET, "/api/reports/summary".to_owned(), None),
        (Method::GET, "/api/reports/activity".to_owned(), None),
        (Method::GET, "/api/reports/top-authors".to_owned(), None),
        (Method::GET, "/api/reports/rebuild".to_owned(), None),
        (Method::POST, "/api/reports/rebuild".to_owned(), None),
        (
            Method::GET,
            format!("/api/admin/users/{bob_id}/deletion"),
            None,
        ),
        (
            Method::POST,
            format!("/api/admin/users/{bob_id}/deletion/retry"),
            None,
        ),
        (Method::GET, "/api/admin/signing-keys".to_owned(), None),
        (Method::POST, "/api/admin/signing-keys".to_owned(), None),
    ];
    for (method, path, body) in &admin_only {
        let answer = api.send(method.clone(), path, &ann, body.clone()).await;
        assert_eq!(
            answer.status, 403,
            "{method} {path} as a user: {}",
            answer.text
        );
        let answer = api.send(method.clone(), path, "", body.clone()).await;
        assert_eq!(answer.status, 401, "{method} {path} anonymously");
    }
    assert_eq!(
        api.get(&notice_path, "").await.status,
        200,
        "the notice is untouched"
    );
    for path in ["/api/reports/summary", "/api/admin/signing-keys"] {
        assert_eq!(
            api.get(path, &admin).await.status,
            200,
            "{path} as the admin"
        );
    }
}

/// A token with `header` and `claims` (JSON) and the signature of `signed`.
fn forged(header: &Value, claims: &Value, signed: &str) -> String {
    let signature = signed.rsplit('.').next().unwrap();
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn decoded(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// API2 broken authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_valid_tokens_of_live_accounts_are_accepted() {
    // Short-lived tokens, so that one can be seen expiring.
    let system = System::start_with_env(
        &[],
        &[
            ("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("DURE_ACCESS_TOKEN_TTL", "10s"),
        ],
    );
    let api = Api::new(&system);
    let token = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let ann_id = api.get("/api/user", &token).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    let (header, claims) = (decoded(parts[0]), decoded(parts[1]));

    let mut as_admin = claims.clone();
    as_admin["role"] = json!("admin");
    let mut unsigned_header = header.clone();
    unsigned_header["alg"] = json!("none");
    let foreign = TokenIssuer::start().await;
    let foreign_admin = foreign.token(&ann_id, "ann", Role::Admin);
    let foreign_parts: Vec<&str> = foreign_admin.split('.').collect();
    let bad_tokens = [
        ("tampered claims", forged(&header, &as_admin, &token)),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(unsigned_header.to_string()),
                parts[1]
            ),
        ),
        (
            "alg none, no signature part",
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(unsigned_header.to_string()),
                parts[1]
            ),
        ),
        (
            "HS256 with the public key as secret",
            forged(
                &json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}),
                &as_admin,
                &token,
            ),
        ),
        ("a foreign key", foreign_admin.clone()),
        (
            "a foreign key under identity's kid",
            forged(&header, &decoded(foreign_parts[1]), &foreign_admin),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    let secured = [
        (Method::GET, "/api/user"),
        (Method::GET, "/api/notifications"),
        (Method::POST, "/api/postings"),
        (Method::GET, "/api/reports/summary"),
    ];
    for (what, bad) in &bad_tokens {
        for (method, path) in &secured {
            let body = (*method == Method::POST).then(|| json!({"title": "t", "body": "b"}));
            let answer = api.send(method.clone(), path, bad, body).await;
            assert_eq!(
                answer.status, 401,
                "{what} on {method} {path}: {}",
                answer.text
            );
            assert_eq!(answer.headers["www-authenticate"], "Bearer");
        }
    }
    let answer = api
        .client
        .get(format!("{}/api/user", api.gateway))
        .header("authorization", "Basic YW5uOnBhc3N3b3Jk")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401, "only bearer tokens");

    // Expiry: the first token is refused once its 10 s (the shortest TTL
    // allowed) and the verifiers' 5 s leeway have passed.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let answer = api.get("/api/user", &token).await;
    assert_eq!(answer.status, 401);
    assert!(answer.text.contains("expired"), "{}", answer.text);

    // A refresh token works once; using it again revokes its whole family.
    let pair = api
        .post(
            "/api/login",
            "",
            json!({"username": "ann", "password": PASSWORD}),
        )
        .await
        .body;
    let first = pair["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = api
        .post("/api/token/refresh", "", json!({"refresh_token": first}))
        .await;
    assert_eq!(refreshed.status, 200);
    let second = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    let reused = api
        .post("/api/token/refresh", "", json!({"refresh_token": first}))
        .await;
    assert_eq!(reused.status, 401, "a used refresh token");
    let after = api
        .post("/api/token/refresh", "", json!({"refresh_token": second}))
        .await;
    assert_eq!(after.status, 401, "the family of a reused token is revoked");

    // A deleted account's unexpired token is refused everywhere.
    let fresh = login(&api.client, &api.gateway, "ann", PASSWORD).await;
    assert_eq!(
        api.send(Method::DELETE, "/api/user", &fresh, None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/user", &fresh).await.status, 401);
    // Other services learn of the deletion from its event, moments later.
    let nowhere = "/api/postings/01a2b3c4-0000-7000-8000-000000000000";
    assert!(
        eventually(Duration::from_secs(20), || {
            let api = &api;
            let fresh = &fresh;
            async move {
                let edit = api
                    .send(Method::PATCH, nowhere, fresh, Some(json!({"title": "t"})))
                    .await;
                let list = api.get("/api/notifications", fresh).await;
                // Refused for the deletion, not because the token expired.
                [edit, list]
                    .iter()
                    .all(|a| a.status == 401 && a.text.contains("deleted"))
            }
        })
        .await,
        "posting and notification refuse the deleted account's token"
    );
    let answer = api
        .post(
            "/api/login",
            "",
            json!({"username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(answer.status, 401, "a deleted account cannot log in");
}

/// API4 unrestricted resource consumption, API6 unrestricted access to
/// sensitive business flows (sign-up and login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_oversize_bodies_floods_and_scripted_sign_ups() {
    let system = System::start_with_env(
        &[],
        &[
            ("DURE_SIGNUPS_PER_ADDRESS", "3"),
            ("DURE_RATE_LIMIT", "50"),
            ("DURE_RATE_LIMIT_BURST", "100"),
        ],
    );
    let api = Api::new(&system);
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;

    let huge = "x".repeat(1024 * 1024 + 1);
    let service_limit = "x".repeat(300 * 1024);
    for (what, body) in [
        ("over the gateway's 1 MiB", &huge),
        ("over a service's 256 KiB", &service_limit),
    ] {
        let answer = api
            .post("/api/postings", &ann, json!({"title": "t", "body": body}))
            .await;
        assert_eq!(answer.status, 413, "{what}: {}", answer.text);
    }
    for (query, status) in [
        ("limit=0", 422),
        ("limit=-1", 422),
        ("limit=ten", 400),
        ("limit=1.5", 400),
        ("cursor=garbage", 400),
    ] {
        let answer = api.get(&format!("/api/postings?{query}"), "").await;
        assert_eq!(answer.status, status, "{query}: {}", answer.text);
    }
    let capped = api.get("/api/postings?limit=100000", "").await;
    assert_eq!(capped.status, 200);
    assert!(capped.body["items"].as_array().unwrap().len() <= 100);

    // Sign-ups: three from this address in the window, then 429.
    for name in ["bea", "cal"] {
        sign_up_and_login_as(&api.client, &api.gateway, name).await;
    }
    let answer = api
        .post(
            "/api/users",
            "",
            json!({"username": "dan", "email": "dan@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert!(answer.headers.contains_key("retry-after"));

    // Logins: five wrong passwords lock the account, even for the right one.
    for _ in 0..5 {
        let answer = api
            .post(
                "/api/login",
                "",
                json!({"username": "ann", "password": "not the password"}),
            )
            .await;
        assert_eq!(answer.status, 401);
    }
    let answer = api
        .post(
            "/api/login",
            "",
            json!({"username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert!(answer.headers.contains_key("retry-after"));

    // A flood from one address: the gateway answers 429 past its bucket.
    let mut statuses = Vec::new();
    let sends = (0..300).map(|_| api.get("/api/notice", ""));
    for answer in futures_util::future::join_all(sends).await {
        statuses.push(answer.status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited > 0, "no 429 among {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
}

/// API7 server-side request forgery, API8 security misconfiguration, API9
/// improper inventory management.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_shows_no_internals_and_fetches_nothing() {
    let system = start();
    let api = Api::new(&system);
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;

    // SSRF: no operation takes a URL to fetch...
    let doc = api.get("/api/openapi.json", "").await.body;
    let mut properties = Vec::new();
    keys(&doc["components"]["schemas"], &mut properties);
    let text = doc.to_string();
    for word in [
        "\"format\":\"uri\"",
        "\"format\":\"url\"",
        "\"format\":\"iri\"",
    ] {
        assert!(!text.contains(word), "an operation takes a URL: {word}");
    }
    for name in [
        "url",
        "uri",
        "callback",
        "webhook",
        "avatar_url",
        "image_url",
    ] {
        assert!(!properties.iter().any(|p| p == name), "a `{name}` field");
    }
    // ...and a URL in user text is never fetched.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/ssrf", listener.local_addr().unwrap());
    let posting = api
        .post(
            "/api/postings",
            &ann,
            json!({"title": target, "body": format!("see {target}")}),
        )
        .await;
    assert_eq!(posting.status, 201);
    let path = format!("/api/postings/{}", posting.body["id"].as_str().unwrap());
    api.post(&format!("{path}/comments"), &ann, json!({"body": target}))
        .await;
    api.get(&path, &ann).await;
    api.get("/api/home", &ann).await;
    let connected = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
    assert!(connected.is_err(), "something fetched the URL in a posting");

    // Misconfiguration: headers on answers good and bad.
    let answers = [
        ("list", api.get("/api/postings", "").await),
        ("own account", api.get("/api/user", &ann).await),
        (
            "not found",
            api.get("/api/postings/01a2b3c4-0000-7000-8000-000000000000", "")
                .await,
        ),
        ("no route", api.get("/api/nothing-here", "").await),
        ("unauthenticated", api.get("/api/user", "").await),
        (
            "malformed body",
            api.client
                .post(format!("{}/api/postings", api.gateway))
                .bearer_auth(&ann)
                .header("content-type", "application/json")
                .body("{\"title\": \"unterminated")
                .send()
                .await
                .map(|r| {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    Answer {
                        status,
                        headers,
                        body: Value::Null,
                        text: String::new(),
                    }
                })
                .unwrap(),
        ),
    ];
    for (what, answer) in &answers {
        assert_eq!(
            answer.headers["x-content-type-options"], "nosniff",
            "{what}"
        );
        assert!(
            !answer.headers.contains_key("server"),
            "{what}: a server banner"
        );
        assert!(!answer.headers.contains_key("x-powered-by"), "{what}");
        assert!(answer.status < 500, "{what}: {}", answer.status);
    }
    assert_eq!(answers[1].1.headers["cache-control"], "no-store");
    let error = api
        .client
        .post(format!("{}/api/postings", api.gateway))
        .bearer_auth(&ann)
        .header("content-type", "application/json")
        .body("{\"title\": 1, \"body\": \"'; DROP TABLE postings; --\"}")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for leak in [
        "sqlx",
        "SELECT",
        "INSERT",
        "panicked",
        "src/",
        ".rs:",
        "backtrace",
        "sqlite",
        "postgres",
    ] {
        assert!(!error.contains(leak), "an error shows `{leak}`: {error}");
    }

    // CORS: no grant to a foreign origin, for a preflight or a request.
    let preflight = api
        .client
        .request(Method::OPTIONS, format!("{}/api/postings", api.gateway))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-credentials")
    );
    let cross = api
        .client
        .get(format!("{}/api/user", api.gateway))
        .bearer_auth(&ann)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!cross.headers().contains_key("access-control-allow-origin"));

    // Inventory: internal routes, the registry and services' metrics stay
    // inside.
    for path in [
        "/internal/descriptor",
        "/internal/events",
        "/internal/events?after=0",
        "/api/../internal/events",
        "/api/%2e%2e/internal/events",
        "/v1/services",
        "/v1/services/posting",
        "/api/postings/../../internal/descriptor",
        "/api/internal/events",
    ] {
        let answer = api.get(path, "").await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
        assert!(!answer.text.contains("\"events\""), "{path}");
    }
    let metrics = api.get("/metrics", "").await;
    for service_metric in ["events_handled_total", "outbox_", "db_pool"] {
        assert!(
            !metrics.text.contains(service_metric),
            "a service's metrics through the gateway: {service_metric}"
        );
    }
}

/// API10 unsafe consumption of APIs: events with malformed or hostile
/// payloads, written straight into posting's outbox, go to the consumers'
/// dead letters (or are applied harmlessly); no consumer crashes or stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_dead_lettered_and_consumers_go_on() {
    let mut system = start();
    let api = Api::new(&system);
    let ann = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let bob = sign_up_and_login_as(&api.client, &api.gateway, "bob").await;
    let posting = api
        .post(
            "/api/postings",
            &bob,
            json!({"title": "Bob's", "body": "b"}),
        )
        .await
        .body;
    let posting_id = posting["id"].as_str().unwrap().to_owned();

    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", system.data_dir.join("posting.db").display());
    let posting_db = sqlx::AnyPool::connect(&url).await.unwrap();
    let hostile = [
        json!({"v": 1}),
        json!({"v": 1, "comment_id": 42, "posting_id": [], "posting_title": {}, "posting_author_id": null,
               "author_id": true, "author_name": 1.5}),
        json!("not an object"),
        json!(null),
    ];
    for data in &hostile {
        let id = uuid::Uuid::now_v7().to_string();
        let envelope = json!({
            "specversion": "1.0", "id": id, "source": "/dure/posting", "type": "comment.added",
            "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json", "data": data
        });
        sqlx::query(
            "INSERT INTO outbox (id, event_type, envelope, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind("comment.added")
        .bind(envelope.to_string())
        .bind(dure_chassis::clock::now())
        .execute(&posting_db)
        .await
        .unwrap();
    }
    posting_db.close().await;

    // A real comment after them is still delivered: the consumer goes on.
    api.post(
        &format!("/api/postings/{posting_id}/comments"),
        &ann,
        json!({"body": "after the hostile ones"}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(30), || {
            let api = &api;
            let bob = &bob;
            async move { api.get("/api/notifications", bob).await.body["unread_count"] == 1 }
        })
        .await,
        "the notification of the real comment arrives"
    );
    for consumer in ["notification", "reporting"] {
        let url = format!(
            "sqlite://{}",
            system.data_dir.join(format!("{consumer}.db")).display()
        );
        let db = sqlx::AnyPool::connect(&url).await.unwrap();
        let mut dead = 0;
        for _ in 0..100 {
            let (count,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM dead_letters WHERE event_type = 'comment.added'",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            dead = count;
            if dead == hostile.len() as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        db.close().await;
        assert_eq!(dead, hostile.len() as i64, "{consumer}'s dead letters");
    }
    // No consumer died on the way: each was started once.
    system.wait_until(|_| false, Duration::from_millis(200));
    for consumer in ["notification", "reporting"] {
        assert_eq!(system.pids(consumer).len(), 1, "{}", system.seen.join("\n"));
    }
}

/// Secrets never in logs: with every process logging at debug, sign-up,
/// login, refresh, a password change and failed logins leave neither the
/// password nor a token in any line of any process, nor in the console's
/// log and trace buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_log_line() {
    let mut system = System::start_with_env(
        &["--log-format", "json", "--verbose"],
        &[
            ("RUST_LOG", "debug"),
            ("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    );
    let api = Api::new(&system);
    let canary = "canary-Pa55word-7f3e9c";
    let changed = "canary-Ch4nged-b41d0e";
    let answer = api
        .post(
            "/api/users",
            "",
            json!({"username": "carol", "email": "carol@example.com", "password": canary}),
        )
        .await;
    assert_eq!(answer.status, 201);
    let mut secrets = vec![
        canary.to_owned(),
        changed.to_owned(),
        ADMIN_PASSWORD.to_owned(),
    ];
    let pair = api
        .post(
            "/api/login",
            "",
            json!({"username": "carol", "password": canary}),
        )
        .await
        .body;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let next = api
        .post("/api/token/refresh", "", json!({"refresh_token": refresh}))
        .await
        .body;
    let next_access = next["access_token"].as_str().unwrap().to_owned();
    let next_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    for wrong in [format!("{canary}-wrong"), canary.to_uppercase()] {
        let answer = api
            .post(
                "/api/login",
                "",
                json!({"username": "carol", "password": wrong}),
            )
            .await;
        assert_eq!(answer.status, 401);
        secrets.push(wrong);
    }
    let answer = api
        .post(
            "/api/login",
            "",
            json!({"username": "nobody", "password": canary}),
        )
        .await;
    assert_eq!(answer.status, 401);
    let answer = api
        .send(
            Method::PATCH,
            "/api/user",
            &next_access,
            Some(json!({"password": changed, "current_password": canary})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // The token used by other requests, and one refused.
    api.get("/api/notifications", &next_access).await;
    api.post(
        "/api/postings",
        &next_access,
        json!({"title": "t", "body": "b"}),
    )
    .await;
    api.post("/api/token/refresh", "", json!({"refresh_token": refresh}))
        .await;
    api.post("/api/logout", "", json!({"refresh_token": next_refresh}))
        .await;
    let admin = login(&api.client, &api.gateway, "admin", ADMIN_PASSWORD).await;
    api.get("/api/reports/summary", &admin).await;
    for token in [&access, &next_access, &admin] {
        secrets.push(token.clone());
        // The signature alone is enough to matter.
        secrets.push(token.rsplit('.').next().unwrap().to_owned());
    }
    secrets.push(refresh.clone());
    secrets.push(next_refresh.clone());

    // Everything the processes printed, and what the console kept.
    tokio::time::sleep(Duration::from_secs(1)).await;
    system.wait_until(|_| false, Duration::from_secs(2));
    let console = reqwest::Client::new();
    let mut kept = String::new();
    for path in ["/api/logs?limit=100000", "/api/traces?limit=1000"] {
        let answer = console
            .get(format!("{}{path}", system.console))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        kept.push_str(&answer.text().await.unwrap());
    }
    let printed = system.seen.join("\n");
    assert!(
        printed.contains("\"level\":\"DEBUG\""),
        "debug lines were printed"
    );
    assert!(kept.contains("logged in"), "the console kept the log lines");
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret in the output: {secret}"
        );
        assert!(
            !kept.contains(secret.as_str()),
            "a secret in the console: {secret}"
        );
    }
}

fn kid(token: &str) -> String {
    decoded(token.split('.').next().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Key rotation: a new key is in the JWKS at once and signs new tokens on
/// every identity replica; tokens of the old key stay valid; no process is
/// restarted for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_without_restarts() {
    let mut system = System::start_with_env(
        &["--replicas", "identity=2"],
        &[("DURE_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let api = Api::new(&system);
    let old = sign_up_and_login_as(&api.client, &api.gateway, "ann").await;
    let admin = login(&api.client, &api.gateway, "admin", ADMIN_PASSWORD).await;
    let before = api.get("/api/admin/signing-keys", &admin).await.body;
    assert_eq!(before["keys"].as_array().unwrap().len(), 1, "{before}");
    let old_kid = kid(&old);
    assert_eq!(before["keys"][0]["kid"], old_kid.as_str());
    // Every service has met the old key.
    api.post("/api/postings", &old, json!({"title": "t", "body": "b"}))
        .await;
    api.get("/api/notifications", &old).await;

    let rotated = api.post("/api/admin/signing-keys", &admin, json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    let new_kid = rotated.body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let jwks = api.get("/api/.well-known/jwks.json", "").await.body;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        published.contains(&new_kid.as_str()) && published.contains(&old_kid.as_str()),
        "{jwks}"
    );
    // Published first, signing seconds later: a verifier that fetched the
    // keys just before the rotation may fetch again by then.
    let keys = api.get("/api/admin/signing-keys", &admin).await.body;
    assert_eq!(keys["keys"][0]["kid"], new_kid.as_str(), "{keys}");
    assert!(keys["keys"][0]["signs_from"].as_str() > keys["keys"][0]["created_at"].as_str());
    assert!(
        keys["keys"][1]["retires_at"].is_string(),
        "the old key retires: {keys}"
    );

    // Both replicas sign with the new key soon (7 s, and each reloads the
    // keys within 10 s).
    assert!(
        eventually(Duration::from_secs(30), || {
            let api = &api;
            let new_kid = new_kid.clone();
            async move {
                for _ in 0..6 {
                    let token = login(&api.client, &api.gateway, "ann", PASSWORD).await;
                    if kid(&token) != new_kid {
                        return false;
                    }
                }
                true
            }
        })
        .await,
        "new tokens are signed with the new key"
    );
    let new = login(&api.client, &api.gateway, "ann", PASSWORD).await;
    for token in [&old, &new] {
        for _ in 0..4 {
            assert_eq!(api.get("/api/user", token).await.status, 200);
        }
        let posted = api
            .post("/api/postings", token, json!({"title": "t", "body": "b"}))
            .await;
        assert_eq!(posted.status, 201, "{}", posted.text);
        assert_eq!(api.get("/api/notifications", token).await.status, 200);
    }
    system.wait_until(|_| false, Duration::from_millis(200));
    for service in ["posting", "notification", "gateway"] {
        assert_eq!(system.pids(service).len(), 1, "{service} was not restarted");
    }
}
