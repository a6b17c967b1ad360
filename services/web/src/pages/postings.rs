//! `/postings/…`: write, read with comments, edit and delete a posting;
//! comment, and delete a comment.

use super::{Cursor, after, older};
use crate::Web;
use crate::backend::{Comment, Failure, ListPage, Posting, Svc};
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

/// The form that writes or edits a posting (and, with `notice`, a notice).
#[derive(Template)]
#[template(path = "posting_form.html")]
pub struct PostingForm {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub action: String,
    pub button: &'static str,
    pub cancel: String,
    pub title: String,
    pub body: String,
    pub notice: bool,
    pub pinned: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "posting.html")]
struct PostingPage {
    chrome: Chrome,
    posting: Posting,
    may_edit: bool,
    comments: Option<Vec<Comment>>,
    more: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Written {
    pub title: String,
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct CommentForm {
    pub body: String,
}

fn form(
    chrome: Chrome,
    editing: Option<&str>,
    written: Written,
    error: Option<String>,
) -> PostingForm {
    PostingForm {
        chrome,
        heading: if editing.is_some() {
            "Edit the posting"
        } else {
            "Write a posting"
        },
        action: editing.map_or_else(
            || "/postings/new".to_owned(),
            |id| format!("/postings/{id}/edit"),
        ),
        button: if editing.is_some() { "Save" } else { "Publish" },
        cancel: editing.map_or_else(|| "/".to_owned(), |id| format!("/postings/{id}")),
        title: written.title,
        body: written.body,
        notice: false,
        pinned: false,
        error,
    }
}

/// The form again with what was written and why it was refused; a service
/// that did not answer is an error page.
fn refused(
    chrome: Chrome,
    editing: Option<&str>,
    written: Written,
    failure: Failure,
) -> Result<Response, PageError> {
    match failure {
        Failure::Refused(problem)
            if problem.status.is_client_error() && problem.status != StatusCode::UNAUTHORIZED =>
        {
            let status = problem.status;
            Ok(render_status(
                status,
                &form(chrome, editing, written, Some(problem.message())),
            ))
        }
        other => Err(other.into()),
    }
}

pub async fn new_form(State(web): State<Web>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.require()?;
    let written = Written {
        title: String::new(),
        body: String::new(),
    };
    render(&form(Chrome::of(&web, &viewer).await, None, written, None))
}

pub async fn publish(
    State(web): State<Web>,
    viewer: Viewer,
    Form(written): Form<Written>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let call = Call::new(Method::POST, "/api/postings").json(&json!({
        "title": written.title,
        "body": written.body,
    }));
    match web
        .backend()
        .json::<Posting>(Svc::Posting, call, viewer.caller())
        .await
    {
        Ok(posting) => Ok(see_other(&format!("/postings/{}", posting.id))),
        Err(failure) => refused(Chrome::of(&web, &viewer).await, None, written, failure),
    }
}

pub async fn show(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    let id = page::id(&id)?;
    let backend = web.backend();
    let posting =
        backend.get::<Posting>(Svc::Posting, format!("/api/postings/{id}"), viewer.caller());
    let comments = backend.get::<ListPage<Comment>>(
        Svc::Posting,
        after(
            &format!("/api/postings/{id}/comments?limit=50"),
            page.cursor.as_deref(),
        ),
        viewer.caller(),
    );
    let (mut chrome, posting, comments) =
        tokio::join!(Chrome::of(&web, &viewer), posting, comments);
    let posting = posting?;
    let comments = chrome.part(comments)?;
    let more = comments
        .as_ref()
        .and_then(|c| older(c.next_cursor.as_deref()));
    let comments = comments.map(|page| {
        page.items
            .into_iter()
            .map(|mut comment| {
                comment.may_delete = viewer.may_edit(&comment.author.id);
                comment
            })
            .collect()
    });
    render(&PostingPage {
        chrome,
        may_edit: viewer.may_edit(&posting.author.id),
        posting,
        comments,
        more,
    })
}

pub async fn edit_form(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let (chrome, posting) = tokio::join!(
        Chrome::of(&web, &viewer),
        web.backend()
            .get::<Posting>(Svc::Posting, format!("/api/postings/{id}"), viewer.caller())
    );
    let posting = posting?;
    if !viewer.may_edit(&posting.author.id) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Only its author or an admin can edit this posting.",
        ));
    }
    let written = Written {
        title: posting.title,
        body: posting.body,
    };
    render(&form(chrome, Some(&id), written, None))
}

pub async fn edit(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(written): Form<Written>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let call = Call::new(Method::PATCH, format!("/api/postings/{id}")).json(&json!({
        "title": written.title,
        "body": written.body,
    }));
    match web
        .backend()
        .send(Svc::Posting, call, viewer.caller())
        .await
    {
        Ok(_) => Ok(see_other(&format!("/postings/{id}"))),
        Err(failure) => refused(Chrome::of(&web, &viewer).await, Some(&id), written, failure),
    }
}

pub async fn delete(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let call = Call::new(Method::DELETE, format!("/api/postings/{id}"));
    web.backend()
        .send(Svc::Posting, call, viewer.caller())
        .await?;
    Ok(see_other("/"))
}

pub async fn comment(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(written): Form<CommentForm>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let call = Call::new(Method::POST, format!("/api/postings/{id}/comments"))
        .json(&json!({ "body": written.body }));
    let comment: Comment = web
        .backend()
        .json(Svc::Posting, call, viewer.caller())
        .await?;
    Ok(see_other(&format!("/postings/{id}#comment-{}", comment.id)))
}

pub async fn delete_comment(
    State(web): State<Web>,
    viewer: Viewer,
    Path((id, comment_id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    viewer.require()?;
    let id = page::id(&id)?;
    let comment_id = page::id(&comment_id)?;
    let call = Call::new(
        Method::DELETE,
        format!("/api/postings/{id}/comments/{comment_id}"),
    );
    web.backend()
        .send(Svc::Posting, call, viewer.caller())
        .await?;
    Ok(see_other(&format!("/postings/{id}#comments")))
}
