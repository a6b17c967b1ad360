//! `/users/{id}`: a public profile and that user's postings.

use super::{Cursor, after, older};
use crate::Web;
use crate::backend::{ListPage, Posting, Profile, Svc};
use crate::page::{self, Chrome, PageError, render};
use crate::session::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    chrome: Chrome,
    profile: Profile,
    postings: Option<Vec<Posting>>,
    older: Option<String>,
}

pub async fn show(
    State(web): State<Web>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    let id = page::id(&id)?;
    let backend = web.backend();
    let profile =
        backend.get::<Profile>(Svc::Identity, format!("/api/users/{id}"), viewer.caller());
    let postings = backend.get::<ListPage<Posting>>(
        Svc::Posting,
        after(
            &format!("/api/postings?limit=20&author={id}"),
            page.cursor.as_deref(),
        ),
        viewer.caller(),
    );
    let (mut chrome, profile, postings) =
        tokio::join!(Chrome::of(&web, &viewer), profile, postings);
    let profile = profile?;
    let postings = chrome.part(postings)?;
    let older = postings
        .as_ref()
        .and_then(|p| older(p.next_cursor.as_deref()));
    render(&UserPage {
        chrome,
        profile,
        postings: postings.map(|p| p.items),
        older,
    })
}
