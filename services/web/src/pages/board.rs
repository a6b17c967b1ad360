//! `/`: pinned notices and the newest postings.

use super::{Cursor, after, older};
use crate::Web;
use crate::backend::{ListPage, Notice, Posting, Svc};
use crate::page::{Chrome, PageError, render};
use crate::session::Viewer;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

#[derive(Template)]
#[template(path = "board.html")]
struct Board {
    chrome: Chrome,
    pinned: Vec<Notice>,
    /// `None` when posting did not answer.
    postings: Option<Vec<Posting>>,
    older: Option<String>,
}

pub async fn board(
    State(web): State<Web>,
    viewer: Viewer,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    let backend = web.backend();
    let first = page.cursor.is_none();
    let notices = async {
        if first {
            backend
                .get::<ListPage<Notice>>(Svc::Notice, "/api/notice?limit=5", viewer.caller())
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let postings = backend.get::<ListPage<Posting>>(
        Svc::Posting,
        after("/api/postings?limit=20", page.cursor.as_deref()),
        viewer.caller(),
    );
    let (mut chrome, notices, postings) =
        tokio::join!(Chrome::of(&web, &viewer), notices, postings);
    let pinned = chrome
        .part(notices)?
        .flatten()
        .map(|page| page.items.into_iter().filter(|n| n.pinned).collect())
        .unwrap_or_default();
    let postings = chrome.part(postings)?;
    let older = postings
        .as_ref()
        .and_then(|p| older(p.next_cursor.as_deref()));
    render(&Board {
        chrome,
        pinned,
        postings: postings.map(|p| p.items),
        older,
    })
}
