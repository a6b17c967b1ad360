//! The handlers, one module per part of the site. Each asks the services it
//! needs at once (with the chrome's unread count), renders what came back,
//! and says which parts are missing.

pub mod account;
pub mod board;
pub mod notices;
pub mod notifications;
pub mod postings;
pub mod users;

use crate::backend::encode;
use serde::Deserialize;

/// `?cursor=`: where a list page starts.
#[derive(Debug, Default, Deserialize)]
pub struct Cursor {
    pub cursor: Option<String>,
}

/// `path` (which has a query already) with the list's cursor, if any.
pub fn after(path: &str, cursor: Option<&str>) -> String {
    match cursor {
        Some(cursor) => format!("{path}&cursor={}", encode(cursor)),
        None => path.to_owned(),
    }
}

/// The next page's cursor, ready for a link's query.
pub fn older(next_cursor: Option<&str>) -> Option<String> {
    next_cursor.map(encode)
}

/// A form's text field as a service takes it: `None` when left empty.
pub fn filled(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.trim().is_empty())
}
