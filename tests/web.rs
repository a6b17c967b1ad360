//! The web app through the gateway of a real `dure up`, over HTTP as a
//! browser speaks it: cookies, forms with their CSRF token, redirects
//! followed by hand so that each answer can be checked. The browser suite
//! (tests/browser.rs) drives the same pages in chromium.

mod support;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::system::*;

/// One browser: its cookies, and the CSRF token of the last page it read.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    csrf: Option<String>,
}

/// An answer, read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location on a {}: {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn is_html(&self) -> bool {
        self.header("content-type").starts_with("text/html")
    }
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: HashMap::new(),
            csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for cookie in headers.get_all(SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let (pair, _) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        if let Some(token) = csrf_of(&body) {
            self.csrf = Some(token);
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    /// Posts `fields` as a form, with the CSRF token of the last page read.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self
            .csrf
            .clone()
            .expect("a page with a form was read first");
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &csrf));
        self.post_raw(path, &form).await
    }

    /// Posts exactly `fields`.
    async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    async fn sign_up(&mut self, username: &str) {
        self.get("/signup").await;
        let email = format!("{username}@example.com");
        let answer = self
            .post(
                "/signup",
                &[
                    ("username", username),
                    ("email", &email),
                    ("password", PASSWORD),
                    ("display_name", ""),
                ],
            )
            .await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        assert!(self.cookies.contains_key("dure_session"));
    }

    /// Publishes a posting and answers its page's path.
    async fn publish(&mut self, title: &str, body: &str) -> String {
        self.get("/postings/new").await;
        let answer = self
            .post("/postings/new", &[("title", title), ("body", body)])
            .await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        answer.location().to_owned()
    }
}

fn csrf_of(html: &str) -> Option<String> {
    let start = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn api_postings(gateway: &str) -> Vec<Value> {
    let list: Value = reqwest::get(format!("{gateway}/api/postings?limit=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_serves_its_pages_through_the_gateway() {
    every_page(Topology::MultiProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_serves_the_same_pages_in_one_process() {
    every_page(Topology::SingleProcess).await;
}

async fn every_page(topology: Topology) {
    let system = System::start(topology.flags());
    let gateway = system.gateway.clone();
    let mut ann = Browser::new(&gateway);

    // The board, signed out: a page with every security header.
    let board = ann.get("/").await;
    assert_eq!(board.status, 200);
    assert!(board.is_html());
    let csp = board.header("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(board.header("x-content-type-options"), "nosniff");
    assert_eq!(board.header("referrer-policy"), "same-origin");
    assert_eq!(board.header("cache-control"), "no-store");
    assert!(board.body.contains(">Sign in<"));

    // The API and the internal routes are not the web app's.
    let api = reqwest::get(format!("{gateway}/api/postings"))
        .await
        .unwrap();
    assert!(
        api.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    for internal in ["/internal/events", "/v1/services", "/v1/instances"] {
        let answer = ann.get(internal).await;
        assert_eq!(answer.status, 404, "{internal}");
        assert!(
            !answer.body.contains("\"instances\""),
            "{internal}: {}",
            answer.body
        );
    }
    let missing = ann.get("/no/such/page").await;
    assert_eq!(missing.status, 404);
    assert!(missing.is_html() && missing.body.contains("There is no such page."));

    // A form without its token changes nothing.
    let forged = ann
        .post_raw(
            "/signup",
            &[
                ("username", "mallory"),
                ("email", "m@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged.is_html());
    let login = reqwest::Client::new()
        .post(format!("{gateway}/api/login"))
        .json(&serde_json::json!({"username": "mallory", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401, "a refused sign-up created the account");

    // Sign up: a session cookie as the contract says.
    ann.get("/signup").await;
    let signed_up = ann
        .post(
            "/signup",
            &[
                ("username", "ann"),
                ("email", "ann@example.com"),
                ("password", PASSWORD),
                ("display_name", "Ann"),
            ],
        )
        .await;
    assert_eq!(signed_up.status, 303, "{}", signed_up.body);
    let cookie = signed_up
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("dure_session="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let home = ann.get("/").await;
    assert!(
        home.body.contains("Sign out") && home.body.contains(">Ann<"),
        "{}",
        home.body
    );
    assert!(
        home.body
            .contains(r#"Notifications <span class="count">0</span>"#),
        "{}",
        home.body
    );

    // A wrong password and an unknown user get the same answer.
    let mut stranger = Browser::new(&gateway);
    stranger.get("/signin").await;
    let wrong = stranger
        .post(
            "/signin",
            &[
                ("username", "ann"),
                ("password", "not the password"),
                ("next", "/"),
            ],
        )
        .await;
    stranger.get("/signin").await;
    let unknown = stranger
        .post(
            "/signin",
            &[
                ("username", "nobody"),
                ("password", "not the password"),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(
        wrong.body.contains("Wrong username or password.")
            && unknown.body.contains("Wrong username or password.")
    );

    // Publish: markup in user text is shown, never run.
    let xss = r#"<script>alert(1)</script><img src=x onerror="alert(2)">"#;
    let posting = ann.publish("Hello <b>there</b>", xss).await;
    assert!(posting.starts_with("/postings/"), "{posting}");
    let page = ann.get(&posting).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Hello &#60;b&#62;there&#60;/b&#62;")
            || page.body.contains("Hello &lt;b&gt;there&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<script>alert") && !page.body.contains("<img src=x"),
        "{}",
        page.body
    );

    // Signed out, "Sign in" comes back to the page it was clicked on.
    let visited = stranger.get(&posting).await;
    assert!(
        visited
            .body
            .contains(&format!("href=\"/signin?next={}\"", encode(&posting))),
        "{}",
        visited.body
    );

    // A second user comments; only the author may edit or delete.
    let mut bob = Browser::new(&gateway);
    bob.sign_up("bob").await;
    bob.get(&posting).await;
    let commented = bob
        .post(&format!("{posting}/comments"), &[("body", "Bob was here")])
        .await;
    assert_eq!(commented.status, 303, "{}", commented.body);
    assert!(
        commented
            .location()
            .starts_with(&format!("{posting}#comment-"))
    );
    assert!(bob.get(&posting).await.body.contains("Bob was here"));
    assert!(
        !bob.get(&posting).await.body.contains("/edit\""),
        "bob is offered the edit link"
    );
    let refused = bob.get(&format!("{posting}/edit")).await;
    assert_eq!(refused.status, 403);
    bob.get(&posting).await;
    let refused = bob.post(&format!("{posting}/delete"), &[]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.is_html());
    assert_eq!(
        api_postings(&gateway).await.len(),
        1,
        "bob deleted ann's posting"
    );

    // Ann is notified of Bob's comment and marks it read.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = ann.get("/notifications").await;
        if list.body.contains("Bob commented on") || list.body.contains("bob commented on") {
            assert!(
                list.body.contains(&format!("href=\"{posting}\"")),
                "{}",
                list.body
            );
            break;
        }
        assert!(Instant::now() < deadline, "no notification: {}", list.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read = ann.post("/notifications/read-all", &[]).await;
    assert_eq!(read.status, 303);
    assert!(
        ann.get("/")
            .await
            .body
            .contains(r#"Notifications <span class="count">0</span>"#)
    );

    // Edit, settings, profile.
    ann.get(&format!("{posting}/edit")).await;
    let edited = ann
        .post(
            &format!("{posting}/edit"),
            &[("title", "Hello again"), ("body", "Edited.")],
        )
        .await;
    assert_eq!(edited.status, 303, "{}", edited.body);
    assert!(ann.get(&posting).await.body.contains("Hello again"));
    let settings = ann.get("/settings").await;
    assert!(settings.body.contains("ann@example.com"));
    let saved = ann
        .post(
            "/settings",
            &[
                ("display_name", "Ann B."),
                ("email", "ann@example.com"),
                ("current_password", ""),
                ("new_password", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert!(
        ann.get("/").await.body.contains(">Ann B.<"),
        "the header shows the new name"
    );
    let bad = ann
        .post(
            "/settings",
            &[
                ("display_name", "Ann B."),
                ("email", "ann@example.com"),
                ("current_password", "wrong one!"),
                ("new_password", "a new password"),
            ],
        )
        .await;
    assert!((400..500).contains(&bad.status), "{}", bad.status);
    assert!(bad.is_html());
    let bobs_settings = bob.get("/settings").await;
    assert!(!bobs_settings.body.contains("ann@example.com"));
    let user_id = api_postings(&gateway).await[0]["author"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let profile = bob.get(&format!("/users/{user_id}")).await;
    assert_eq!(profile.status, 200);
    assert!(profile.body.contains("Hello again") && !profile.body.contains("ann@example.com"));

    // Malformed input is a 4xx page, never a 5xx.
    for path in [
        "/?cursor=%00garbage",
        "/postings/not-an-id",
        "/assets/app-0000000000.css",
    ] {
        let answer = ann.get(path).await;
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {}",
            answer.status
        );
        assert!(answer.is_html(), "{path}");
    }
    let stylesheet = board
        .body
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".css"))
        .unwrap()
        .to_owned();
    let css = ann.get(&stylesheet).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(css.header("cache-control").contains("immutable"));

    // Sign out: the session is gone, not only its cookie.
    let session = ann.cookies["dure_session"].clone();
    ann.get("/").await;
    let out = ann.post("/signout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(!ann.cookies.contains_key("dure_session"));
    ann.cookies.insert("dure_session".into(), session);
    let after = ann.get("/settings").await;
    assert_eq!(after.status, 303);
    assert!(
        after.location().starts_with("/signin?next="),
        "{}",
        after.location()
    );

    // Deleting the account asks again, then ends every session.
    bob.get("/settings/delete").await;
    let unconfirmed = bob.post("/settings/delete", &[]).await;
    assert_eq!(unconfirmed.status, 400);
    bob.get("/settings/delete").await;
    let deleted = bob.post("/settings/delete", &[("confirm", "yes")]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(!bob.cookies.contains_key("dure_session"));
    drop(system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_badge_stream_carries_a_new_notification_live() {
    let system = System::start(&[]);
    let mut ann = Browser::new(&system.gateway);
    ann.sign_up("ann").await;
    let posting = ann.publish("Tell me", "Anything.").await;
    let live = ann
        .client
        .get(format!("{}/notifications/live", system.gateway))
        .header("cookie", ann.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let mut bob = Browser::new(&system.gateway);
    bob.sign_up("bob").await;
    bob.get(&posting).await;
    bob.post(&format!("{posting}/comments"), &[("body", "Live!")])
        .await;

    let mut live = live;
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = live.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: notification") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(arrived, Ok(true), "seen: {seen}");
    assert!(seen.contains("commented on"), "{seen}");

    // Signed out, there is no stream: a page, not an event stream.
    let anonymous = Browser::new(&system.gateway)
        .get("/notifications/live")
        .await;
    assert_eq!(anonymous.status, 303);
    assert!(anonymous.location().starts_with("/signin?next="));
    drop(system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_its_access_token() {
    // Access tokens of 10 s: every request near expiry refreshes, and
    // requests at once must not spend the single-use refresh token twice.
    let system = System::start_with_env(&[], &[("DURE_ACCESS_TOKEN_TTL", "10s")]);
    let mut ann = Browser::new(&system.gateway);
    ann.sign_up("ann").await;
    for round in 0..2 {
        let cookie = ann.cookie_header();
        let pages = (0..6).map(|_| {
            let client = ann.client.clone();
            let url = format!("{}/settings", system.gateway);
            let cookie = cookie.clone();
            async move {
                let answer = client
                    .get(url)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                (answer.status().as_u16(), answer.text().await.unwrap())
            }
        });
        for (status, body) in futures_util::future::join_all(pages).await {
            assert_eq!(status, 200, "round {round}: {body}");
            assert!(body.contains("ann@example.com"), "round {round}");
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(11)).await;
        }
    }
    drop(system);
}
