//! The live consumers: each event of identity, posting and notice goes into
//! the live generation, and reporting answers the erasure saga's command.

use crate::{projection, store};
use dure_chassis::auth::Revocations;
use dure_chassis::db::{Backend, Tx};
use dure_chassis::events::Handler;
use dure_chassis::events::erasure::Participant;
use dure_contracts::events::{Envelope, ErasureRequested, Payload, UserDeleted};
use futures_util::future::BoxFuture;

pub struct ReportEvents {
    pub backend: Backend,
    pub participant: Participant,
    pub revocations: Revocations,
}

impl Handler for ReportEvents {
    fn wants(&self, event_type: &str) -> bool {
        projection::reads(event_type)
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.handle_at(tx, event, None)
    }

    fn handle_at<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
        position: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let generation = store::live_generation(tx, self.backend).await?;
            projection::apply(tx, generation, event, position).await?;
            match event.kind.as_str() {
                ErasureRequested::TYPE => {
                    let command: ErasureRequested = event.payload()?;
                    if self.participant.addressed(&command) {
                        // The projection anonymised the live generation (and
                        // any rebuild replays the same command).
                        let first = self.participant.begin(tx, &command.user_id).await?;
                        self.participant
                            .confirm(tx, &command.user_id, first)
                            .await?;
                    }
                    Ok(())
                }
                UserDeleted::TYPE => {
                    let deleted: UserDeleted = event.payload()?;
                    self.revocations
                        .revoke(tx, &deleted.user_id, &deleted.tokens_valid_until)
                        .await
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
