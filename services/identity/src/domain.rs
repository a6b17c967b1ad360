//! Account values that validate on construction: once a `Username` exists,
//! it is a valid username. Each type also gives the JSON Schema of what it
//! accepts, built from the same limits, for the OpenAPI document.

use dure_chassis::openapi;
use dure_contracts::FieldError;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

/// 3–32 characters of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    const MIN: usize = 3;
    const MAX: usize = 32;

    pub fn schema() -> Object {
        let (min, max) = (Self::MIN, Self::MAX);
        openapi::string(min, max, &format!("^[a-z0-9_]{{{min},{max}}}$"), "ann_lee")
    }

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let valid_chars = text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let len = text.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) || !valid_chars {
            return Err(FieldError::new(
                "username",
                "must be 3 to 32 characters of a-z, 0-9 and _",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An email address, lower-cased so that uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    const MAX: usize = 254;

    pub fn schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
            .max_length(Some(Self::MAX))
            .examples([serde_json::json!("ann@example.com")])
            .build()
    }

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let invalid =
            || FieldError::new("email", "must be an email address such as ann@example.com");
        let text = text.to_lowercase();
        if text.chars().count() > Self::MAX
            || text.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = text.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What other users see: 1–64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    const MAX: usize = 64;

    pub fn schema() -> Object {
        openapi::string(
            1,
            Self::MAX,
            &openapi::not_blank_pattern(openapi::CONTROLS),
            "Ann Lee",
        )
    }

    /// Stored trimmed; the limit counts what was sent.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if text.chars().count() > Self::MAX || text.trim().is_empty() {
            return Err(FieldError::new(
                "display_name",
                "must be 1 to 64 characters",
            ));
        }
        let text = text.trim();
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: at least 10 characters (any script), at most 1024.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

impl NewPassword {
    const MIN: usize = 10;
    pub const MAX: usize = 1024;

    pub fn schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(Self::MIN))
            .max_length(Some(Self::MAX))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
            .examples([serde_json::json!("correct horse battery")])
            .build()
    }

    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        let len = text.chars().count();
        if len < Self::MIN {
            return Err(FieldError::new(field, "must be at least 10 characters"));
        }
        if len > Self::MAX {
            return Err(FieldError::new(field, "must be at most 1024 characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("ann_99").is_ok());
        for bad in ["an", "Ann", "ann-b", "ann b", "ä_ann", &"a".repeat(33), ""] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("Ann@Example.COM").unwrap().as_str(),
            "ann@example.com"
        );
        assert!(Email::parse(" ann@example.com").is_err());
        assert!(Email::parse("admin@localhost").is_ok());
        for bad in [
            "ann",
            "@x.org",
            "ann@",
            "a@b@c.org",
            "a b@c.org",
            "ann@-x.org",
            "ann@x..org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_and_passwords() {
        assert_eq!(
            DisplayName::parse("  Ann Lee ").unwrap().as_str(),
            "Ann Lee"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
        assert!(DisplayName::parse("김철수").is_ok());
        assert!(NewPassword::parse("short", "password").is_err());
        assert!(NewPassword::parse("비밀번호비밀번호비밀번", "password").is_ok());
    }
}
