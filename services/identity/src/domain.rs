//! Account values that validate on construction: once a `Username` exists,
//! it is a valid username.

use dure_contracts::FieldError;

/// 3–32 characters of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let valid_chars = text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let len = text.chars().count();
        if !(3..=32).contains(&len) || !valid_chars {
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
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let invalid =
            || FieldError::new("email", "must be an email address such as ann@example.com");
        let text = text.trim().to_lowercase();
        if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        let len = text.chars().count();
        if !(1..=64).contains(&len) {
            return Err(FieldError::new(
                "display_name",
                "must be 1 to 64 characters",
            ));
        }
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
    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        let len = text.chars().count();
        if len < 10 {
            return Err(FieldError::new(field, "must be at least 10 characters"));
        }
        if len > 1024 {
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
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
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
