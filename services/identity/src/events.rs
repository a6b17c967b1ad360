//! The events identity publishes, built from its records.

use crate::users::UserRecord;
use dure_chassis::clock;
use dure_contracts::events::{UserDeleted, UserRegistered, UserUpdated};
use std::time::Duration;

pub fn registered(user: &UserRecord) -> UserRegistered {
    UserRegistered {
        v: 1,
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
    }
}

pub fn updated(user: &UserRecord) -> UserUpdated {
    UserUpdated {
        v: 1,
        user_id: user.id.clone(),
        display_name: user.display_name.clone(),
    }
}

/// Tokens issued until now live at most `access_token_ttl` (plus the
/// verifiers' leeway): that long must other services refuse them.
pub fn deleted(user: &UserRecord, access_token_ttl: Duration) -> UserDeleted {
    let until = time::OffsetDateTime::now_utc() + access_token_ttl + Duration::from_secs(60);
    UserDeleted {
        v: 1,
        user_id: user.id.clone(),
        tokens_valid_until: clock::format(until),
    }
}
