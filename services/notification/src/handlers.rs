//! What notification does with other services' events.
//!
//! - `comment.added` → a `comment` notification for the posting's author
//!   (not when they comment on their own posting, nor for deleted users).
//! - `notice.published` → one `notice` row that every user sees, with read
//!   marks per user: no row per user.
//! - `user.*` → notification's replica of users; a deleted user's
//!   notifications go, and their tokens stop working here.
//! - `user.erasure.requested` → the erasure saga's step: the user's
//!   notifications, read marks and name go (a tombstone keeps new comment
//!   notifications from reaching the erased account), then the reply.

use dure_chassis::auth::Revocations;
use dure_chassis::clock;
use dure_chassis::db::Tx;
use dure_chassis::events::Handler;
use dure_chassis::events::erasure::Participant;
use dure_contracts::events::{
    CommentAdded, Envelope, ErasureRequested, NoticePublished, Payload, UserDeleted,
    UserRegistered, UserUpdated,
};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct NotificationEvents {
    pub revocations: Revocations,
    /// Woken after each handled event: live streams look for news.
    pub news: Arc<Notify>,
    pub participant: Participant,
}

const WANTED: &[&str] = &[
    CommentAdded::TYPE,
    NoticePublished::TYPE,
    UserRegistered::TYPE,
    UserUpdated::TYPE,
    UserDeleted::TYPE,
    ErasureRequested::TYPE,
];

impl Handler for NotificationEvents {
    fn wants(&self, event_type: &str) -> bool {
        WANTED.contains(&event_type)
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match event.kind.as_str() {
                CommentAdded::TYPE => comment_added(tx, event.payload()?).await,
                NoticePublished::TYPE => notice_published(tx, event.payload()?).await,
                UserRegistered::TYPE => {
                    let user: UserRegistered = event.payload()?;
                    upsert_user(tx, &user.user_id, &user.display_name).await
                }
                UserUpdated::TYPE => {
                    let user: UserUpdated = event.payload()?;
                    upsert_user(tx, &user.user_id, &user.display_name).await
                }
                UserDeleted::TYPE => {
                    let deleted: UserDeleted = event.payload()?;
                    user_deleted(tx, &deleted).await?;
                    self.revocations
                        .revoke(tx, &deleted.user_id, &deleted.tokens_valid_until)
                        .await
                }
                ErasureRequested::TYPE => {
                    let command: ErasureRequested = event.payload()?;
                    if !self.participant.addressed(&command) {
                        return Ok(());
                    }
                    let first = self.participant.begin(tx, &command.user_id).await?;
                    if first {
                        erase(tx, &command.user_id).await?;
                    }
                    self.participant.confirm(tx, &command.user_id, first).await
                }
                _ => Ok(()),
            }
        })
    }

    fn dead_lettered<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
        error: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.participant.report_failure(tx, event, error))
    }

    fn after_commit<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, ()> {
        self.news.notify_waiters();
        if event.kind == ErasureRequested::TYPE {
            self.participant.replied();
        }
        Box::pin(async {})
    }
}

// Entries are dated when they arrive here, not when the event was produced:
// live streams and lists then agree on what is new.
async fn comment_added(tx: &mut Tx, comment: CommentAdded) -> anyhow::Result<()> {
    if comment.posting_author_id == comment.author_id {
        return Ok(());
    }
    let deleted: Option<(i64,)> = sqlx::query_as("SELECT deleted FROM users WHERE id = $1")
        .bind(&comment.posting_author_id)
        .fetch_optional(&mut **tx)
        .await?;
    if deleted.is_some_and(|(d,)| d != 0) {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, link, created_at) VALUES ($1, $2, 'comment', $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&comment.posting_author_id)
    .bind(format!("{} commented on \"{}\"", comment.author_name, comment.posting_title))
    .bind(format!("/api/postings/{}", comment.posting_id))
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn notice_published(tx: &mut Tx, notice: NoticePublished) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO notices (id, title, link, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
        .bind(&notice.notice_id)
        .bind(&notice.title)
        .bind(format!("/api/notice/{}", notice.notice_id))
        .bind(clock::now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn upsert_user(tx: &mut Tx, id: &str, display_name: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, display_name) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
    )
    .bind(id)
    .bind(display_name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn user_deleted(tx: &mut Tx, deleted: &UserDeleted) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, display_name, deleted) VALUES ($1, '(deleted user)', 1) \
         ON CONFLICT (id) DO UPDATE SET deleted = 1",
    )
    .bind(&deleted.user_id)
    .execute(&mut **tx)
    .await?;
    for table in [
        "DELETE FROM notifications WHERE user_id = $1",
        "DELETE FROM notice_reads WHERE user_id = $1",
    ] {
        sqlx::query(table)
            .bind(&deleted.user_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The erasure step: nothing of the user stays but a nameless tombstone.
async fn erase(tx: &mut Tx, user_id: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, display_name, deleted) VALUES ($1, '(deleted user)', 1) \
         ON CONFLICT (id) DO UPDATE SET display_name = '(deleted user)', deleted = 1",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    for table in [
        "DELETE FROM notifications WHERE user_id = $1",
        "DELETE FROM notice_reads WHERE user_id = $1",
    ] {
        sqlx::query(table).bind(user_id).execute(&mut **tx).await?;
    }
    Ok(())
}
