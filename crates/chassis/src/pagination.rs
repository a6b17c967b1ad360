//! Keyset pagination: `?limit=&cursor=` in, `next_cursor` out.
//!
//! A cursor is the sort key of the last item of a page, so the next page
//! starts right after it with an indexed range scan: the cost of a page does
//! not grow with its depth or the table's size, and rows inserted between
//! fetches cause neither duplicates nor gaps.
//!
//! Clients treat cursors as opaque, but their form is declared: the parts of
//! the key joined by `~` (`2026-01-01T00:00:00.000000Z~<uuid>`), each part of
//! a fixed [`Key`] shape. Any string of that form is a position in the order,
//! so a [`Cursor`] checks the form alone, and the same [`Cursor`] writes the
//! pattern into the OpenAPI document, so that what the document allows is
//! exactly what the endpoint accepts.

use crate::error::ApiError;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// Separates a cursor's parts; appears in none of them.
const SEPARATOR: char = '~';

/// The shape of one part of a sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `0` or `1` (pinned first).
    Flag,
    /// A timestamp as [`crate::clock`] writes it.
    Time,
    /// A lower-case hyphenated UUID.
    Id,
}

impl Key {
    fn pattern(self) -> &'static str {
        match self {
            Self::Flag => "[01]",
            Self::Time => r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z",
            Self::Id => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    }

    fn matches(self, part: &str) -> bool {
        let shape: &[u8] = match self {
            Self::Flag => return part == "0" || part == "1",
            Self::Time => b"dddd-dd-ddTdd:dd:dd.ddddddZ",
            Self::Id => b"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh",
        };
        part.len() == shape.len()
            && part.bytes().zip(shape).all(|(byte, want)| match want {
                b'd' => byte.is_ascii_digit(),
                b'h' => matches!(byte, b'0'..=b'9' | b'a'..=b'f'),
                other => byte == *other,
            })
    }
}

/// The form of an endpoint's cursors: the shapes of its sort key's parts.
#[derive(Debug, Clone, Copy)]
pub struct Cursor(pub &'static [Key]);

/// Newest or oldest first by creation: `(created_at, id)`.
pub const BY_CREATION: Cursor = Cursor(&[Key::Time, Key::Id]);

impl Cursor {
    /// The ECMA-262 regex of this form, for the OpenAPI document; empty
    /// means the first page.
    pub fn pattern(&self) -> String {
        let parts: Vec<&str> = self.0.iter().map(|k| k.pattern()).collect();
        format!("^({})?$", parts.join(&SEPARATOR.to_string()))
    }

    /// The `cursor` query parameter's schema.
    pub fn schema(&self) -> Object {
        let example: Vec<&str> = self
            .0
            .iter()
            .map(|key| match key {
                Key::Flag => "0",
                Key::Time => "2026-01-01T00:00:00.000000Z",
                Key::Id => "01a2b3c4-0000-7000-8000-000000000000",
            })
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(self.pattern()))
            .description(Some("`next_cursor` of the previous page"))
            .examples([serde_json::json!(example.join(&SEPARATOR.to_string()))])
            .build()
    }

    pub fn encode(&self, parts: &[&str]) -> String {
        debug_assert!(
            parts.len() == self.0.len() && self.0.iter().zip(parts).all(|(k, p)| k.matches(p)),
            "a sort key that does not fit its cursor form: {parts:?}"
        );
        parts.join(&SEPARATOR.to_string())
    }

    fn decode(&self, cursor: &str) -> Result<Vec<String>, ApiError> {
        let parts: Vec<&str> = cursor.split(SEPARATOR).collect();
        if parts.len() != self.0.len() || !self.0.iter().zip(&parts).all(|(k, p)| k.matches(p)) {
            return Err(ApiError::BadRequest(
                "`cursor` is not a cursor this endpoint gives out (use `next_cursor`)".into(),
            ));
        }
        Ok(parts.into_iter().map(str::to_owned).collect())
    }
}

/// `?limit=&cursor=`, as text so that bad values get a clear problem. Its
/// parameters document a [`BY_CREATION`] cursor; an endpoint with another
/// order documents its own.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(schema_with = limit_schema)]
    pub limit: Option<String>,
    #[param(schema_with = by_creation_schema)]
    pub cursor: Option<String>,
}

fn by_creation_schema() -> Object {
    BY_CREATION.schema()
}

/// The `limit` query parameter's schema.
pub fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .description(Some(format!(
            "page size, default {DEFAULT_LIMIT}; larger asks get {MAX_LIMIT}"
        )))
        .examples([serde_json::json!(DEFAULT_LIMIT)])
        .build()
}

impl PageQuery {
    /// The page size: 20 by default, at most 100 (larger asks are capped).
    pub fn limit(&self) -> Result<i64, ApiError> {
        let Some(raw) = self.limit.as_deref() else {
            return Ok(DEFAULT_LIMIT);
        };
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::BadRequest(
                "`limit` must be a whole number".into(),
            ));
        }
        if raw.starts_with('-') || digits.bytes().all(|b| b == b'0') {
            return Err(ApiError::validation("limit", "must be at least 1"));
        }
        // Beyond i64 is still a whole number, and still capped.
        Ok(digits
            .parse::<i64>()
            .map_or(MAX_LIMIT, |n| n.min(MAX_LIMIT)))
    }

    /// The decoded cursor, of the form `shape`.
    pub fn cursor(&self, shape: Cursor) -> Result<Option<Vec<String>>, ApiError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| shape.decode(c))
            .transpose()
    }
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
        assert_eq!(
            query(Some("99999999999999999999999"), None)
                .limit()
                .unwrap(),
            100
        );
        for zero in ["0", "-3", "000"] {
            assert_eq!(query(Some(zero), None).limit().unwrap_err().status(), 422);
        }
        for bad in ["ten", "", " 5", "+5", "1.5", "-"] {
            assert_eq!(
                query(Some(bad), None).limit().unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
    }

    const ID: &str = "01a2b3c4-0000-7000-8000-00000000abcd";
    const AT: &str = "2026-01-01T00:00:00.000000Z";

    #[test]
    fn cursors_round_trip_and_reject_other_forms() {
        let cursor = BY_CREATION.encode(&[AT, ID]);
        assert_eq!(
            query(None, Some(&cursor))
                .cursor(BY_CREATION)
                .unwrap()
                .unwrap(),
            [AT, ID]
        );
        let pinned = Cursor(&[Key::Flag, Key::Time, Key::Id]);
        assert!(query(None, Some(&cursor)).cursor(pinned).is_err());
        for bad in [
            "%%%",
            "2026-01-01T00:00:00Z~x",
            &format!("{AT}~{ID}~"),
            &format!("{AT}~{}", ID.to_uppercase()),
            &format!("{AT}\n~{ID}"),
        ] {
            assert_eq!(
                query(None, Some(bad))
                    .cursor(BY_CREATION)
                    .unwrap_err()
                    .status(),
                400,
                "{bad}"
            );
        }
        assert!(query(None, Some("")).cursor(BY_CREATION).unwrap().is_none());
        assert_eq!(
            pinned.pattern(),
            format!("^([01]~{}~{})?$", Key::Time.pattern(), Key::Id.pattern())
        );
    }

    #[test]
    fn a_full_page_has_a_next_cursor() {
        let (items, next) = page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(items, [1, 2]);
        assert_eq!(next.as_deref(), Some("2"));
        assert_eq!(page(vec![1, 2], 2, |n| n.to_string()).1, None);
    }
}
