//! Events between services: the CloudEvents 1.0 envelope and the versioned
//! payload of every event type.
//!
//! Producers put an [`Envelope`] in their outbox; consumers read the `type`,
//! ignore types they do not know, and decode `data` with the payload type,
//! which ignores fields it does not know. A payload that changes
//! incompatibly gets a new `v` (or a new type); additive fields need neither.

use serde::{Deserialize, Serialize};

/// A CloudEvents 1.0 event in its JSON form, with the `traceparent`
/// extension so that a trace continues across the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// A UUIDv7, unique per event: consumers deduplicate on it.
    pub id: String,
    /// The producing service, e.g. `/dure/identity`.
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// The payload, decoded as the type its `type` names.
    pub fn payload<P: Payload>(&self) -> Result<P, serde_json::Error> {
        serde_json::from_value(self.data.clone())
    }
}

/// A payload type and the event type name it travels under.
pub trait Payload: Serialize + for<'de> Deserialize<'de> {
    const TYPE: &'static str;
    /// What the event is about (CloudEvents `subject`), e.g. a user id.
    fn subject(&self) -> String;
}

macro_rules! payload {
    ($ty:ident, $name:literal, $subject:ident) => {
        impl Payload for $ty {
            const TYPE: &'static str = $name;
            fn subject(&self) -> String {
                self.$subject.clone()
            }
        }
    };
}

/// `user.registered`: an account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub v: u32,
    pub user_id: String,
    pub username: String,
    pub display_name: String,
}
payload!(UserRegistered, "user.registered", user_id);

/// `user.updated`: the public part of an account changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub v: u32,
    pub user_id: String,
    pub display_name: String,
}
payload!(UserUpdated, "user.updated", user_id);

/// `user.deleted`: the account is gone; its tokens must stop working until
/// `tokens_valid_until` (RFC 3339), when the last of them expires anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub v: u32,
    pub user_id: String,
    pub tokens_valid_until: String,
}
payload!(UserDeleted, "user.deleted", user_id);

/// `posting.published`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingPublished {
    pub v: u32,
    pub posting_id: String,
    pub author_id: String,
    pub title: String,
}
payload!(PostingPublished, "posting.published", posting_id);

/// `posting.updated`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingUpdated {
    pub v: u32,
    pub posting_id: String,
    pub title: String,
}
payload!(PostingUpdated, "posting.updated", posting_id);

/// `posting.deleted`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingDeleted {
    pub v: u32,
    pub posting_id: String,
}
payload!(PostingDeleted, "posting.deleted", posting_id);

/// `comment.added`: carries what a notification needs, so that the consumer
/// makes no call back to posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAdded {
    pub v: u32,
    pub comment_id: String,
    pub posting_id: String,
    pub posting_title: String,
    pub posting_author_id: String,
    pub author_id: String,
    pub author_name: String,
}
payload!(CommentAdded, "comment.added", comment_id);

/// `notice.published`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePublished {
    pub v: u32,
    pub notice_id: String,
    pub title: String,
}
payload!(NoticePublished, "notice.published", notice_id);

/// `comment.deleted`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentDeleted {
    pub v: u32,
    pub comment_id: String,
    pub posting_id: String,
}
payload!(CommentDeleted, "comment.deleted", comment_id);

/// `notice.deleted`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeDeleted {
    pub v: u32,
    pub notice_id: String,
}
payload!(NoticeDeleted, "notice.deleted", notice_id);

/// `user.erasure.requested`: the erasure saga's command to every
/// participant holding a user's data (docs/events.md, "The erasure saga").
/// identity sends it again, with a higher `attempt`, while a participant has
/// not confirmed; handling it twice has no second effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequested {
    pub v: u32,
    pub user_id: String,
    pub attempt: u32,
    /// The participants that have not confirmed yet; the others may ignore it.
    pub services: Vec<String>,
}
payload!(ErasureRequested, "user.erasure.requested", user_id);

/// `user.erasure.confirmed`: a participant's reply. `applied` is true the one
/// time the participant erased the data, false when it had done so already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureConfirmed {
    pub v: u32,
    pub user_id: String,
    pub service: String,
    pub applied: bool,
}
payload!(ErasureConfirmed, "user.erasure.confirmed", user_id);

/// `user.erasure.failed`: a participant could not apply the command (it went
/// to its dead letters); identity records the error and tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureFailed {
    pub v: u32,
    pub user_id: String,
    pub service: String,
    pub error: String,
}
payload!(ErasureFailed, "user.erasure.failed", user_id);

/// `user.erased`: every participant confirmed and identity erased the
/// account's email and credentials; the saga is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserErased {
    pub v: u32,
    pub user_id: String,
}
payload!(UserErased, "user.erased", user_id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_ignore_unknown_fields() {
        let data =
            serde_json::json!({"v": 1, "user_id": "u", "display_name": "Ann", "added_later": true});
        let envelope = Envelope {
            specversion: "1.0".into(),
            id: "e".into(),
            source: "/dure/identity".into(),
            kind: UserUpdated::TYPE.into(),
            time: "2026-01-01T00:00:00.000000Z".into(),
            subject: Some("u".into()),
            datacontenttype: "application/json".into(),
            data,
            traceparent: None,
        };
        let payload: UserUpdated = envelope.payload().unwrap();
        assert_eq!(payload.display_name, "Ann");
        let round_trip: Envelope =
            serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
        assert_eq!(round_trip, envelope);
    }
}
