//! Timestamps as services store and send them: RFC 3339 in UTC with exactly
//! six fractional digits (`2026-11-21T23:44:04.123456Z`). Fixed width makes
//! the text sort in time order, so it can be a key in both SQLite and Postgres.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Now, as stored text.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Any instant, as stored text.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Reads stored text (or any RFC 3339 string) back.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_fixed_width_and_round_trips() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.5 UTC);
        let text = format(at);
        assert_eq!(text, "2026-01-02T03:04:05.500000Z");
        assert_eq!(parse(&text), Some(at));
        assert_eq!(now().len(), text.len());
    }
}
