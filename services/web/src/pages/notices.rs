//! `/notices…`: the admins' notices; admins write and delete them.

use super::postings::PostingForm;
use super::{Cursor, after, older};
use crate::Web;
use crate::backend::{Failure, ListPage, Notice, Svc};
use crate::page::{self, Chrome, PageError, render, render_status, see_other};
use crate::session::Viewer;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use dure_chassis::peer::Call;
use serde::Deserialize;
use serde_json::json;

#[derive(Template)]
#[template(path = "notices.html")]
struct NoticesPage {
    chrome: Chrome,
    admin: bool,
    notices: Vec<Notice>,
    older: Option<String>,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    chrome: Chrome,
    admin: bool,
    notice: Notice,
}

#[derive(Debug, Deserialize)]
pub struct NoticeForm {
    pub title: String,
    pub body: String,
    /// A checkbox: present ("on") when ticked.
    pub pinned: Option<String>,
}

fn form(chrome: Chrome, written: NoticeForm, error: Option<String>) -> PostingForm {
    PostingForm {
        chrome,
        heading: "Write a notice",
        action: "/notices/new".into(),
        button: "Publish",
        cancel: "/notices".into(),
        pinned: written.pinned.is_some(),
        title: written.title,
        body: written.body,
        notice: true,
        error,
    }
}

pub async fn list(
    State(web): State<Web>,
    viewer: Viewer,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    let (chrome, notices) = tokio::join!(
        Chrome::of(&web, &viewer),
        web.backend().get::<ListPage<Notice>>(
            Svc::Notice,
            after("/api/notice?limit=20", page.cursor.as_deref()),
            viewer.caller(),
        )
    );
    let notices = notices?;
    render(&NoticesPage {
        chrome,
        admin: viewer.user.as_ref().is_some_and(|u| u.admin),
        older: older(notices.next_cursor.as_deref()),
        notices: notices.items,
    })
}

pub async fn show(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = page::id(&id)?;
    let (chrome, notice) = tokio::join!(
        Chrome::of(&web, &viewer),
        web.backend()
            .get::<Notice>(Svc::Notice, format!("/api/notice/{id}"), viewer.caller())
    );
    render(&NoticePage {
        chrome,
        admin: viewer.user.as_ref().is_some_and(|u| u.admin),
        notice: notice?,
    })
}

pub async fn new_form(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require_admin()?;
    let empty = NoticeForm {
        title: String::new(),
        body: String::new(),
        pinned: None,
    };
    render(&form(Chrome::of(&web, &viewer).await, empty, None))
}

pub async fn publish(
    State(web): State<Web>,
    viewer: Viewer,
    Form(written): Form<NoticeForm>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    let call = Call::new(Method::POST, "/api/notice").json(&json!({
        "title": written.title,
        "body": written.body,
        "pinned": written.pinned.is_some(),
    }));
    match web
        .backend()
        .json::<Notice>(Svc::Notice, call, viewer.caller())
        .await
    {
        Ok(notice) => Ok(see_other(&format!("/notices/{}", notice.id))),
        Err(Failure::Refused(problem))
            if problem.status.is_client_error() && problem.status != StatusCode::UNAUTHORIZED =>
        {
            let chrome = Chrome::of(&web, &viewer).await;
            Ok(render_status(
                problem.status,
                &form(chrome, written, Some(problem.message())),
            ))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require_admin()?;
    let id = page::id(&id)?;
    let call = Call::new(Method::DELETE, format!("/api/notice/{id}"));
    web.backend()
        .send(Svc::Notice, call, viewer.caller())
        .await?;
    Ok(see_other("/notices"))
}
