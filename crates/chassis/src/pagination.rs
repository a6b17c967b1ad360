//! Keyset pagination: `?limit=&cursor=` in, `next_cursor` out.
//!
//! A cursor is the sort key of the last item of a page, made opaque
//! (base64url of its parts), so the next page starts right after it with an
//! indexed range scan: the cost of a page does not grow with its depth or the
//! table's size, and rows inserted between fetches cause neither duplicates
//! nor gaps.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// Separates a cursor's parts; never appears in ids or timestamps.
const SEPARATOR: char = '\u{1f}';
const VERSION: &str = "1";

/// `?limit=&cursor=`, as text so that bad values get a clear problem.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size: 20 by default, at most 100 (larger asks are capped).
    pub fn limit(&self) -> Result<i64, ApiError> {
        let Some(raw) = self.limit.as_deref() else {
            return Ok(DEFAULT_LIMIT);
        };
        let limit: i64 = raw
            .trim()
            .parse()
            .map_err(|_| ApiError::BadRequest("`limit` must be a whole number".into()))?;
        if limit < 1 {
            return Err(ApiError::validation("limit", "must be at least 1"));
        }
        Ok(limit.min(MAX_LIMIT))
    }

    /// The decoded cursor, expected to have `parts` parts.
    pub fn cursor(&self, parts: usize) -> Result<Option<Vec<String>>, ApiError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| decode(c, parts))
            .transpose()
    }
}

pub fn encode(parts: &[&str]) -> String {
    let mut text = String::from(VERSION);
    for part in parts {
        text.push(SEPARATOR);
        text.push_str(part);
    }
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str, parts: usize) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::BadRequest("`cursor` is not a cursor this endpoint gave out".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut fields = text.split(SEPARATOR);
    if fields.next() != Some(VERSION) {
        return Err(bad());
    }
    let fields: Vec<String> = fields.map(str::to_owned).collect();
    let malformed = |f: &String| f.is_empty() || f.len() > 64 || f.chars().any(char::is_control);
    if fields.len() != parts || fields.iter().any(malformed) {
        return Err(bad());
    }
    Ok(fields)
}

/// Splits `rows` (fetched with `limit + 1`) into a page and its next cursor.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn limits_default_cap_and_refuse() {
        assert_eq!(query(None, None).limit().unwrap(), 20);
        assert_eq!(query(Some("5"), None).limit().unwrap(), 5);
        assert_eq!(query(Some("1000"), None).limit().unwrap(), 100);
        assert_eq!(query(Some("0"), None).limit().unwrap_err().status(), 422);
        assert_eq!(query(Some("ten"), None).limit().unwrap_err().status(), 400);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode(&["2026-01-01T00:00:00.000000Z", "01a2"]);
        assert_eq!(
            query(None, Some(&cursor)).cursor(2).unwrap().unwrap(),
            ["2026-01-01T00:00:00.000000Z", "01a2"]
        );
        assert!(query(None, Some(&cursor)).cursor(3).is_err());
        for bad in ["%%%", "bm9wZQ", &encode(&[""; 2])] {
            assert_eq!(
                query(None, Some(bad)).cursor(2).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
        assert!(query(None, Some("")).cursor(2).unwrap().is_none());
    }

    #[test]
    fn a_full_page_has_a_next_cursor() {
        let (items, next) = page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(items, [1, 2]);
        assert_eq!(next.as_deref(), Some("2"));
        assert_eq!(page(vec![1, 2], 2, |n| n.to_string()).1, None);
    }
}
