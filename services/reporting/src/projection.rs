//! What each event changes in one generation of the read model. The live
//! consumers and a rebuild's replay both apply events through [`apply`], so
//! a rebuilt generation is the live one computed again.
//!
//! Counts are of what exists now: a deleted posting, comment, notice or
//! account leaves them. An erased user stays, anonymised, so that their
//! postings still count under "(deleted user)".

use dure_chassis::db::Tx;
use dure_contracts::events::{
    CommentAdded, CommentDeleted, Envelope, ErasureRequested, NoticeDeleted, NoticePublished,
    Payload, PostingDeleted, PostingPublished, UserDeleted, UserRegistered, UserUpdated,
};

/// The name an erased user is shown under.
pub const ERASED_USER: &str = "(deleted user)";

/// The producer of an event: `identity` for source `/dure/identity`.
pub fn producer(event: &Envelope) -> &str {
    event.source.rsplit('/').next().unwrap_or_default()
}

/// Whether the projection reads this event type at all.
pub fn reads(event_type: &str) -> bool {
    matches!(
        event_type,
        UserRegistered::TYPE
            | UserUpdated::TYPE
            | UserDeleted::TYPE
            | ErasureRequested::TYPE
            | PostingPublished::TYPE
            | PostingDeleted::TYPE
            | CommentAdded::TYPE
            | CommentDeleted::TYPE
            | NoticePublished::TYPE
            | NoticeDeleted::TYPE
    )
}

/// Applies `event` (at `position` of its producer's feed) to generation
/// `gen`, unless the generation is already past that position; true if it
/// was applied. Without a position the event is applied (its consumer's
/// inbox keeps it from being applied twice).
pub async fn apply(
    tx: &mut Tx,
    generation: i64,
    event: &Envelope,
    position: Option<i64>,
) -> anyhow::Result<bool> {
    let producer = producer(event);
    if let Some(position) = position {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM positions WHERE gen = $1 AND producer = $2")
                .bind(generation)
                .bind(producer)
                .fetch_optional(&mut **tx)
                .await?;
        if applied.is_some_and(|(p,)| p >= position) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO positions (gen, producer, position) VALUES ($1, $2, $3) \
             ON CONFLICT (gen, producer) DO UPDATE SET position = excluded.position",
        )
        .bind(generation)
        .bind(producer)
        .bind(position)
        .execute(&mut **tx)
        .await?;
    }
    change(tx, generation, event).await?;
    Ok(true)
}

async fn change(tx: &mut Tx, generation: i64, event: &Envelope) -> anyhow::Result<()> {
    // Times are the events' own, so that replaying an event dates it as the
    // first time.
    let at = event.time.as_str();
    let (sql, binds): (&str, Vec<String>) = match event.kind.as_str() {
        UserRegistered::TYPE => {
            let user: UserRegistered = event.payload()?;
            (
                "INSERT INTO users (gen, user_id, display_name, registered_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (gen, user_id) DO NOTHING",
                vec![user.user_id, user.display_name, at.to_owned()],
            )
        }
        UserUpdated::TYPE => {
            let user: UserUpdated = event.payload()?;
            (
                "UPDATE users SET display_name = $3 WHERE gen = $1 AND user_id = $2 AND erased = 0",
                vec![user.user_id, user.display_name],
            )
        }
        UserDeleted::TYPE => {
            let user: UserDeleted = event.payload()?;
            (
                "UPDATE users SET deleted = 1 WHERE gen = $1 AND user_id = $2",
                vec![user.user_id],
            )
        }
        ErasureRequested::TYPE => {
            let command: ErasureRequested = event.payload()?;
            if !command.services.iter().any(|s| s == crate::NAME) {
                return Ok(());
            }
            (
                "UPDATE users SET display_name = $3, deleted = 1, erased = 1 WHERE gen = $1 AND user_id = $2",
                vec![command.user_id, ERASED_USER.to_owned()],
            )
        }
        PostingPublished::TYPE => {
            let posting: PostingPublished = event.payload()?;
            (
                "INSERT INTO postings (gen, posting_id, author_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (gen, posting_id) DO NOTHING",
                vec![posting.posting_id, posting.author_id, at.to_owned()],
            )
        }
        PostingDeleted::TYPE => {
            let posting: PostingDeleted = event.payload()?;
            // Its comments went with it in posting's database.
            sqlx::query("DELETE FROM comments WHERE gen = $1 AND posting_id = $2")
                .bind(generation)
                .bind(&posting.posting_id)
                .execute(&mut **tx)
                .await?;
            (
                "DELETE FROM postings WHERE gen = $1 AND posting_id = $2",
                vec![posting.posting_id],
            )
        }
        CommentAdded::TYPE => {
            let comment: CommentAdded = event.payload()?;
            (
                "INSERT INTO comments (gen, comment_id, posting_id, author_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gen, comment_id) DO NOTHING",
                vec![
                    comment.comment_id,
                    comment.posting_id,
                    comment.author_id,
                    at.to_owned(),
                ],
            )
        }
        CommentDeleted::TYPE => {
            let comment: CommentDeleted = event.payload()?;
            (
                "DELETE FROM comments WHERE gen = $1 AND comment_id = $2",
                vec![comment.comment_id],
            )
        }
        NoticePublished::TYPE => {
            let notice: NoticePublished = event.payload()?;
            (
                "INSERT INTO notices (gen, notice_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (gen, notice_id) DO NOTHING",
                vec![notice.notice_id, at.to_owned()],
            )
        }
        NoticeDeleted::TYPE => {
            let notice: NoticeDeleted = event.payload()?;
            (
                "DELETE FROM notices WHERE gen = $1 AND notice_id = $2",
                vec![notice.notice_id],
            )
        }
        _ => return Ok(()),
    };
    let mut query = sqlx::query(sql).bind(generation);
    for value in binds {
        query = query.bind(value);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
