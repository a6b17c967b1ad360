//! The participant's side of the erasure saga (docs/events.md, "The erasure
//! saga"): identity sends `user.erasure.requested` until every participant
//! has answered `user.erasure.confirmed`.
//!
//! A participant erases a user's data in the transaction that handles the
//! command, records that it did in `erasures`, and appends its reply to its
//! outbox in the same transaction: the reply exists exactly when the
//! erasure does, and a command that arrives again (a retry, a redelivery)
//! is answered again without a second erasure.

use super::Outbox;
use crate::clock;
use crate::db::Tx;
use dure_contracts::events::{Envelope, ErasureConfirmed, ErasureFailed, ErasureRequested};

/// A service holding users' data, taking part in their erasure.
#[derive(Clone, Debug)]
pub struct Participant {
    service: &'static str,
    outbox: Outbox,
}

impl Participant {
    pub fn new(service: &'static str, outbox: Outbox) -> Self {
        Self { service, outbox }
    }

    /// Whether the command asks this service for anything.
    pub fn addressed(&self, command: &ErasureRequested) -> bool {
        command.services.iter().any(|s| s == self.service)
    }

    /// Records that this service erases `user_id` now; false if it did so
    /// before (then nothing must be erased again).
    pub async fn begin(&self, tx: &mut Tx, user_id: &str) -> anyhow::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO erasures (user_id, erased_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(clock::now())
        .execute(&mut **tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Appends the reply, in the transaction of the erasure.
    pub async fn confirm(&self, tx: &mut Tx, user_id: &str, applied: bool) -> anyhow::Result<()> {
        let reply = ErasureConfirmed {
            v: 1,
            user_id: user_id.to_owned(),
            service: self.service.to_owned(),
            applied,
        };
        self.outbox.append(tx, &reply).await?;
        if applied {
            metrics::counter!("erasure_steps_applied_total", "service" => self.service)
                .increment(1);
        }
        Ok(())
    }

    /// For `Handler::dead_lettered`: tells identity the command failed here,
    /// so that the saga shows why and tries again.
    pub async fn report_failure(
        &self,
        tx: &mut Tx,
        event: &Envelope,
        error: &str,
    ) -> anyhow::Result<()> {
        if event.kind != <ErasureRequested as dure_contracts::events::Payload>::TYPE {
            return Ok(());
        }
        let Ok(command) = event.payload::<ErasureRequested>() else {
            return Ok(());
        };
        if !self.addressed(&command) {
            return Ok(());
        }
        let failed = ErasureFailed {
            v: 1,
            user_id: command.user_id,
            service: self.service.to_owned(),
            error: error.chars().take(500).collect(),
        };
        self.outbox.append(tx, &failed).await?;
        Ok(())
    }

    /// After the handling transaction committed: have the reply sequenced
    /// at once rather than at the sequencer's next poll.
    pub fn replied(&self) {
        self.outbox.wake();
    }
}
