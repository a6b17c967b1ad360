//! Account erasure as a saga, orchestrated here (docs/events.md, "The
//! erasure saga").
//!
//! `DELETE /api/user` disables the account and, in the same transaction,
//! writes the saga (`erasure_sagas`, one `erasure_steps` row per
//! participant) and its first command, `user.erasure.requested`, to the
//! outbox. Each participant erases what it holds and replies
//! `user.erasure.confirmed` through its own outbox; [`Replies`] records the
//! replies. When every step is confirmed, identity erases the account's
//! email, credentials and names and publishes `user.erased`. [`retry`]
//! sends the command again, with backoff, to the steps still pending, and
//! marks a saga `failed` past its deadline; an admin may retry a failed one.
//!
//! Erasure has no compensation: data once erased cannot be given back, and
//! the request must not be undone. Every step therefore recovers forward:
//! it is retried until it succeeds, and a saga that cannot finish is made
//! visible instead of rolled back.

use dure_chassis::ApiError;
use dure_chassis::clock;
use dure_chassis::db::{Db, Tx};
use dure_chassis::events::{Handler, Outbox};
use dure_contracts::events::{
    Envelope, ErasureConfirmed, ErasureFailed, ErasureRequested, Payload, UserErased,
};
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Every service holding users' data, each a step of every saga. A saga
/// waits for the participants known when it started; a participant added
/// later erases the data of users deleted before it existed from identity's
/// history (`user.erasure.requested` is kept in the feed), without a step.
pub const PARTICIPANTS: &[&str] = &["posting", "notification", "reporting"];

/// The name an erased account keeps, for content that still refers to it.
pub const ERASED_NAME: &str = "(deleted user)";

/// When commands are sent again and when a saga gives up.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The pause before the first resend; it doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// After this the saga is `failed`.
    pub deadline: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

impl Policy {
    fn next_attempt(&self, attempt: i64) -> String {
        let exponent = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
        let pause = self
            .backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff);
        later(pause)
    }
}

fn later(by: Duration) -> String {
    clock::format(OffsetDateTime::now_utc() + by)
}

/// Starts the saga of `user_id`, in the transaction that disabled it.
pub async fn start(
    tx: &mut Tx,
    outbox: &Outbox,
    policy: &Policy,
    user_id: &str,
) -> Result<(), ApiError> {
    let now = clock::now();
    sqlx::query(
        "INSERT INTO erasure_sagas (user_id, state, started_at, deadline_at, attempt, next_attempt_at) \
         VALUES ($1, 'in_progress', $2, $3, 1, $4)",
    )
    .bind(user_id)
    .bind(&now)
    .bind(later(policy.deadline))
    .bind(policy.next_attempt(1))
    .execute(&mut **tx)
    .await?;
    for service in PARTICIPANTS {
        sqlx::query(
            "INSERT INTO erasure_steps (user_id, service, state, attempts, updated_at) \
             VALUES ($1, $2, 'pending', 1, $3)",
        )
        .bind(user_id)
        .bind(*service)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
    }
    let command = ErasureRequested {
        v: 1,
        user_id: user_id.to_owned(),
        attempt: 1,
        services: PARTICIPANTS.iter().map(|s| (*s).to_owned()).collect(),
    };
    outbox.append(tx, &command).await?;
    metrics::counter!("erasure_sagas_started_total").increment(1);
    Ok(())
}

/// The participants' replies, from their feeds.
pub struct Replies {
    pub outbox: Outbox,
}

impl Handler for Replies {
    fn wants(&self, event_type: &str) -> bool {
        event_type == ErasureConfirmed::TYPE || event_type == ErasureFailed::TYPE
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match event.kind.as_str() {
                ErasureConfirmed::TYPE => {
                    let reply: ErasureConfirmed = event.payload()?;
                    confirmed(tx, &self.outbox, &reply).await
                }
                ErasureFailed::TYPE => {
                    let reply: ErasureFailed = event.payload()?;
                    sqlx::query(
                        "UPDATE erasure_steps SET last_error = $3, updated_at = $4 \
                         WHERE user_id = $1 AND service = $2 AND state = 'pending'",
                    )
                    .bind(&reply.user_id)
                    .bind(&reply.service)
                    .bind(&reply.error)
                    .bind(clock::now())
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }

    fn after_commit<'a>(&'a self, _event: &'a Envelope) -> BoxFuture<'a, ()> {
        self.outbox.wake();
        Box::pin(async {})
    }
}

/// Confirms a step; the last confirmation completes the saga.
async fn confirmed(tx: &mut Tx, outbox: &Outbox, reply: &ErasureConfirmed) -> anyhow::Result<()> {
    let step = sqlx::query(
        "UPDATE erasure_steps SET state = 'confirmed', last_error = NULL, updated_at = $3 \
         WHERE user_id = $1 AND service = $2 AND state = 'pending'",
    )
    .bind(&reply.user_id)
    .bind(&reply.service)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    if step.rows_affected() == 0 {
        // A repeated reply, or one from a participant without a step.
        return Ok(());
    }
    let (pending,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM erasure_steps WHERE user_id = $1 AND state = 'pending'",
    )
    .bind(&reply.user_id)
    .fetch_one(&mut **tx)
    .await?;
    if pending > 0 {
        return Ok(());
    }
    // Every participant has erased its part: now identity's own. A failed
    // saga whose last step confirms late completes too (forward recovery).
    let completed = sqlx::query(
        "UPDATE erasure_sagas SET state = 'completed', completed_at = $2 \
         WHERE user_id = $1 AND state <> 'completed'",
    )
    .bind(&reply.user_id)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    if completed.rows_affected() == 0 {
        return Ok(());
    }
    let erased_id = reply.user_id.replace('-', "");
    sqlx::query(
        "UPDATE users SET username = $2, email = $3, display_name = $4, password_hash = '', \
         updated_at = $5 WHERE id = $1",
    )
    .bind(&reply.user_id)
    .bind(format!("erased_{erased_id}"))
    .bind(format!("{erased_id}@erased.invalid"))
    .bind(ERASED_NAME)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    outbox
        .append(
            tx,
            &UserErased {
                v: 1,
                user_id: reply.user_id.clone(),
            },
        )
        .await?;
    metrics::counter!("erasure_sagas_completed_total").increment(1);
    tracing::info!(user_id = %reply.user_id, "account erased");
    Ok(())
}

/// Sends the command again to pending steps when due, and fails sagas past
/// their deadline; runs until the task is dropped.
pub async fn retry(db: Db, outbox: Outbox, policy: Policy) {
    loop {
        if let Err(err) = retry_due(&db, &outbox, &policy).await {
            tracing::warn!(
                error = format!("{err:#}"),
                "resending erasure commands failed"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn retry_due(db: &Db, outbox: &Outbox, policy: &Policy) -> anyhow::Result<()> {
    let now = clock::now();
    let due: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT user_id, attempt, deadline_at FROM erasure_sagas \
         WHERE state = 'in_progress' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 100",
    )
    .bind(&now)
    .fetch_all(db.pool())
    .await?;
    for (user_id, attempt, deadline_at) in due {
        let mut tx = db.begin().await?;
        if deadline_at <= now {
            // Another replica may have done this already: the state check
            // makes it happen once.
            let failed = sqlx::query(
                "UPDATE erasure_sagas SET state = 'failed' WHERE user_id = $1 AND state = 'in_progress' AND attempt = $2",
            )
            .bind(&user_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if failed.rows_affected() == 1 {
                metrics::counter!("erasure_sagas_failed_total").increment(1);
                tracing::error!(user_id = %user_id, "erasure saga failed: a participant did not confirm before the deadline");
            }
            continue;
        }
        let claimed = sqlx::query(
            "UPDATE erasure_sagas SET attempt = attempt + 1, next_attempt_at = $3 \
             WHERE user_id = $1 AND state = 'in_progress' AND attempt = $2",
        )
        .bind(&user_id)
        .bind(attempt)
        .bind(policy.next_attempt(attempt + 1))
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            continue;
        }
        send(&mut tx, outbox, &user_id, attempt + 1).await?;
        outbox.commit(tx).await?;
    }
    let mut by_state: std::collections::BTreeMap<String, i64> =
        ["in_progress", "completed", "failed"]
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect();
    let counted: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM erasure_sagas GROUP BY state")
            .fetch_all(db.pool())
            .await?;
    by_state.extend(counted);
    for (state, count) in by_state {
        metrics::gauge!("erasure_sagas", "state" => state).set(count as f64);
    }
    Ok(())
}

/// Appends the command for the steps still pending, counting the attempt.
async fn send(tx: &mut Tx, outbox: &Outbox, user_id: &str, attempt: i64) -> anyhow::Result<()> {
    let pending: Vec<(String,)> = sqlx::query_as(
        "SELECT service FROM erasure_steps WHERE user_id = $1 AND state = 'pending' ORDER BY service",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    if pending.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE erasure_steps SET attempts = attempts + 1, updated_at = $2 \
         WHERE user_id = $1 AND state = 'pending'",
    )
    .bind(user_id)
    .bind(clock::now())
    .execute(&mut **tx)
    .await?;
    let command = ErasureRequested {
        v: 1,
        user_id: user_id.to_owned(),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        services: pending.into_iter().map(|(s,)| s).collect(),
    };
    outbox.append(tx, &command).await?;
    Ok(())
}

/// `GET /api/admin/users/{id}/deletion`
#[derive(Debug, Serialize, ToSchema)]
pub struct Deletion {
    /// `in_progress`, `completed` or `failed`.
    pub state: String,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub deadline_at: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    pub service: String,
    /// `pending` or `confirmed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

pub async fn deletion(db: &Db, user_id: &str) -> Result<Option<Deletion>, ApiError> {
    let saga: Option<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT state, started_at, completed_at, deadline_at FROM erasure_sagas WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    let Some((state, started_at, completed_at, deadline_at)) = saga else {
        return Ok(None);
    };
    let steps: Vec<(String, String, i64, Option<String>, String)> = sqlx::query_as(
        "SELECT service, state, attempts, last_error, updated_at FROM erasure_steps \
         WHERE user_id = $1 ORDER BY service",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    Ok(Some(Deletion {
        state,
        started_at,
        completed_at,
        deadline_at,
        steps: steps
            .into_iter()
            .map(|(service, state, attempts, last_error, updated_at)| Step {
                service,
                state,
                attempts,
                last_error,
                updated_at,
            })
            .collect(),
    }))
}

/// Puts a failed saga back in progress with a new deadline and sends the
/// command at once; 404 without a saga, 409 unless it failed.
pub async fn retry_failed(
    db: &Db,
    outbox: &Outbox,
    policy: &Policy,
    user_id: &str,
) -> Result<(), ApiError> {
    let mut tx = db.begin().await?;
    let state: Option<(String, i64)> =
        sqlx::query_as("SELECT state, attempt FROM erasure_sagas WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((state, attempt)) = state else {
        return Err(ApiError::NotFound(
            "this user has no account deletion".into(),
        ));
    };
    if state != "failed" {
        return Err(ApiError::Conflict(format!(
            "the deletion is {state}; only a failed one can be retried"
        )));
    }
    sqlx::query(
        "UPDATE erasure_sagas SET state = 'in_progress', attempt = $2, deadline_at = $3, next_attempt_at = $4 \
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(attempt + 1)
    .bind(later(policy.deadline))
    .bind(policy.next_attempt(1))
    .execute(&mut *tx)
    .await?;
    send(&mut tx, outbox, user_id, attempt + 1)
        .await
        .map_err(ApiError::Internal)?;
    outbox.commit(tx).await?;
    Ok(())
}
