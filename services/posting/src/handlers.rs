//! What posting does with identity's `user.*` events: keep its copy of
//! author names current, and refuse a deleted user's tokens.

use crate::store;
use dure_chassis::auth::Revocations;
use dure_chassis::db::Tx;
use dure_chassis::events::Handler;
use dure_contracts::events::{Envelope, Payload, UserDeleted, UserUpdated};
use futures_util::future::BoxFuture;

pub struct UserEvents {
    pub revocations: Revocations,
}

impl Handler for UserEvents {
    fn wants(&self, event_type: &str) -> bool {
        event_type == UserUpdated::TYPE || event_type == UserDeleted::TYPE
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
                _ => Ok(()),
            }
        })
    }
}
