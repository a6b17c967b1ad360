//! The stylesheet and the script, embedded in the binary and served under
//! names that carry a hash of their content: a page always links the
//! version it was made with, so browsers may keep them for a year.

use crate::page::PageError;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

/// The assets and their hashed names.
#[derive(Debug, Clone)]
pub struct Assets {
    css: String,
    js: String,
}

impl Default for Assets {
    fn default() -> Self {
        Self::new()
    }
}

impl Assets {
    pub fn new() -> Self {
        Self {
            css: hashed("app", "css", CSS),
            js: hashed("app", "js", JS),
        }
    }

    /// The stylesheet's path, e.g. `/assets/app-1a2b3c4d5e.css`.
    pub fn css_path(&self) -> String {
        format!("/assets/{}", self.css)
    }

    /// The script's path.
    pub fn js_path(&self) -> String {
        format!("/assets/{}", self.js)
    }
}

fn hashed(stem: &str, extension: &str, content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let short: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{short}.{extension}")
}

/// `GET /assets/{name}`: an asset by its current name; old names are gone.
pub async fn serve(
    State(web): State<crate::Web>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let assets = web.assets();
    let (body, kind) = if name == assets.css {
        (CSS, "text/css; charset=utf-8")
    } else if name == assets.js {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return Err(PageError::not_found());
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_change_with_content() {
        assert_eq!(hashed("app", "css", "a"), hashed("app", "css", "a"));
        assert_ne!(hashed("app", "css", "a"), hashed("app", "css", "b"));
        let assets = Assets::new();
        assert!(assets.css_path().starts_with("/assets/app-"));
        assert!(assets.js_path().ends_with(".js"));
    }
}
