//! What posting does with identity's `user.*` events: keep its copy of
//! author names current, refuse a deleted user's tokens, and take part in
//! the erasure saga (the author's name becomes "(deleted user)").

use crate::store;
use dure_chassis::auth::Revocations;
use dure_chassis::db::Tx;
use dure_chassis::events::Handler;
use dure_chassis::events::erasure::Participant;
use dure_contracts::events::{Envelope, ErasureRequested, Payload, UserDeleted, UserUpdated};
use futures_util::future::BoxFuture;

pub struct UserEvents {
    pub revocations: Revocations,
    pub participant: Participant,
}

impl Handler for UserEvents {
    fn wants(&self, event_type: &str) -> bool {
        event_type == UserUpdated::TYPE
            || event_type == UserDeleted::TYPE
            || event_type == ErasureRequested::TYPE
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match event.kind.as_str() {
                UserUpdated::TYPE => {
                    let updated: UserUpdated = event.payload()?;
                    store::rename_author(tx, &updated.user_id, &updated.display_name).await
                }
                UserDeleted::TYPE => {
                    let deleted: UserDeleted = event.payload()?;
                    store::rename_author(tx, &deleted.user_id, store::DELETED_USER).await?;
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
                        store::rename_author(tx, &command.user_id, store::DELETED_USER).await?;
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
        if event.kind == ErasureRequested::TYPE {
            self.participant.replied();
        }
        Box::pin(async {})
    }
}
