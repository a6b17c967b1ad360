//! Accounts: sign up, sign in, sign out, settings, deleting the account.

use super::filled;
use crate::Web;
use crate::backend::{Account, Failure, Svc, Tokens};
use crate::page::{Chrome, PageError, render, render_status, safe_next, see_other};
use crate::session::{self, Viewer};
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use dure_chassis::peer::Call;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    chrome: Chrome,
    username: String,
    email: String,
    display_name: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    username: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    username: String,
    display_name: String,
    email: String,
    saved: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "delete_account.html")]
struct DeletePage {
    chrome: Chrome,
}

#[derive(Template)]
#[template(path = "deleted.html")]
struct DeletedPage {
    chrome: Chrome,
}

#[derive(Debug, Deserialize)]
pub struct SignUp {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    pub username: String,
    pub password: String,
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Next {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    pub display_name: String,
    pub email: String,
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub new_password: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Saved {
    pub saved: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Confirm {
    pub confirm: Option<String>,
}

/// The same sentence for an unknown user and a wrong password, as the API.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

pub async fn signup_form(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    render(&SignUpPage {
        chrome: Chrome::of(&web, &viewer).await,
        username: String::new(),
        email: String::new(),
        display_name: String::new(),
        error: None,
    })
}

pub async fn signup(
    State(web): State<Web>,
    viewer: Viewer,
    Form(form): Form<SignUp>,
) -> Result<Response, PageError> {
    let mut body = json!({
        "username": form.username,
        "email": form.email.trim(),
        "password": form.password,
    });
    if let Some(name) = filled(&form.display_name) {
        body["display_name"] = Value::from(name);
    }
    let created = web
        .backend()
        .send(
            Svc::Identity,
            Call::new(Method::POST, "/api/users").json(&body),
            viewer.caller(),
        )
        .await;
    let status = match created {
        Ok(_) => return sign_in(&web, &viewer, &form.username, &form.password, "/").await,
        Err(Failure::Refused(problem)) if problem.status.is_client_error() => {
            (problem.status, problem.message())
        }
        Err(other) => return Err(other.into()),
    };
    let page = SignUpPage {
        chrome: Chrome::plain(&web, &viewer),
        username: form.username,
        email: form.email,
        display_name: form.display_name,
        error: Some(status.1),
    };
    Ok(render_status(status.0, &page))
}

pub async fn signin_form(
    State(web): State<Web>,
    viewer: Viewer,
    Query(next): Query<Next>,
) -> Result<Response, PageError> {
    render(&SignInPage {
        chrome: Chrome::of(&web, &viewer).await,
        username: String::new(),
        next: safe_next(next.next.as_deref()),
        error: None,
    })
}

pub async fn signin(
    State(web): State<Web>,
    viewer: Viewer,
    Form(form): Form<SignIn>,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref());
    match sign_in(&web, &viewer, &form.username, &form.password, &next).await {
        Err(PageError::Page { status, message }) if status.is_client_error() => {
            let page = SignInPage {
                chrome: Chrome::plain(&web, &viewer),
                username: form.username,
                next,
                error: Some(message),
            };
            Ok(render_status(status, &page))
        }
        other => other,
    }
}

/// Logs in at identity, starts a session, and goes on to `next`.
async fn sign_in(
    web: &Web,
    viewer: &Viewer,
    username: &str,
    password: &str,
    next: &str,
) -> Result<Response, PageError> {
    let call = Call::new(Method::POST, "/api/login")
        .json(&json!({ "username": username, "password": password }));
    match web
        .backend()
        .json::<Tokens>(Svc::Identity, call, viewer.caller())
        .await
    {
        Ok(tokens) => {
            let cookie = session::start(web, &tokens, viewer.secure).await?;
            let mut response = see_other(next);
            response.headers_mut().append(SET_COOKIE, cookie);
            Ok(response)
        }
        Err(Failure::Refused(problem)) if problem.status == StatusCode::UNAUTHORIZED => {
            Err(PageError::new(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS))
        }
        Err(Failure::Refused(problem)) if problem.status == StatusCode::TOO_MANY_REQUESTS => {
            let wait = problem
                .retry_after
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "a while".to_owned(), |secs| format!("{secs} seconds"));
            Err(PageError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed sign-ins. Try again in {wait}."),
            ))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn signout(
    State(web): State<Web>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let cleared = session::end(&web, &headers, &viewer).await;
    let mut response = see_other("/");
    response.headers_mut().append(SET_COOKIE, cleared);
    Ok(response)
}

pub async fn settings_form(
    State(web): State<Web>,
    viewer: Viewer,
    Query(saved): Query<Saved>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let (chrome, account) = tokio::join!(
        Chrome::of(&web, &viewer),
        web.backend()
            .get::<Account>(Svc::Identity, "/api/user", viewer.caller())
    );
    let account = account?;
    render(&SettingsPage {
        chrome,
        username: account.username,
        display_name: account.display_name,
        email: account.email,
        saved: saved.saved.is_some(),
        error: None,
    })
}

pub async fn settings(
    State(web): State<Web>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<SettingsForm>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let mut change = Map::new();
    change.insert(
        "display_name".into(),
        Value::from(form.display_name.as_str()),
    );
    change.insert("email".into(), Value::from(form.email.trim()));
    if filled(&form.new_password).is_some() {
        change.insert("password".into(), Value::from(form.new_password.as_str()));
        change.insert(
            "current_password".into(),
            Value::from(form.current_password.as_str()),
        );
    }
    let call = Call::new(Method::PATCH, "/api/user").json(&change);
    match web
        .backend()
        .send(Svc::Identity, call, viewer.caller())
        .await
    {
        Ok(_) => {
            // The header shows the display name from the access token.
            session::refresh_soon(&web, &headers).await;
            Ok(see_other("/settings?saved=1"))
        }
        Err(Failure::Refused(problem))
            if problem.status.is_client_error() && problem.status != StatusCode::UNAUTHORIZED =>
        {
            let (chrome, account) = tokio::join!(
                Chrome::of(&web, &viewer),
                web.backend()
                    .get::<Account>(Svc::Identity, "/api/user", viewer.caller())
            );
            let page = SettingsPage {
                chrome,
                username: account.map(|a| a.username).unwrap_or_default(),
                display_name: form.display_name,
                email: form.email,
                saved: false,
                error: Some(problem.message()),
            };
            Ok(render_status(problem.status, &page))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete_form(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require()?;
    render(&DeletePage {
        chrome: Chrome::of(&web, &viewer).await,
    })
}

pub async fn delete(
    State(web): State<Web>,
    viewer: Viewer,
    Form(confirm): Form<Confirm>,
) -> Result<Response, PageError> {
    let user = viewer.require()?;
    if confirm.confirm.as_deref() != Some("yes") {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Deleting the account needs its confirmation.",
        ));
    }
    let call = Call::new(Method::DELETE, "/api/user");
    web.backend()
        .send(Svc::Identity, call, viewer.caller())
        .await?;
    session::end_all(&web, &user.user_id).await;
    let gone = Viewer {
        user: None,
        ..viewer.clone()
    };
    let mut response = render(&DeletedPage {
        chrome: Chrome::plain(&web, &gone),
    })?;
    response
        .headers_mut()
        .append(SET_COOKIE, session::cleared(viewer.secure));
    Ok(response)
}
