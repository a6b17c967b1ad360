//! Login throttling, kept in identity's database so that every replica sees
//! the same counts.
//!
//! Two limits over one sliding window: a tight one per account (5 failures)
//! against guessing one user's password, and a looser one per client address
//! (100 failures) against credential stuffing across many usernames, loose
//! enough not to lock out a whole office behind one NAT. While a subject is at
//! its limit, attempts get 429 with `Retry-After` (the time until its oldest
//! counted failure leaves the window) and are not checked at all.
//!
//! Sign-ups count the same way, per client address (20 accounts in the
//! window), against scripted mass account creation.

use dure_chassis::ApiError;
use dure_chassis::clock;
use sqlx::AnyPool;
use std::net::IpAddr;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub per_account: u32,
    pub per_address: u32,
    pub signups_per_address: u32,
    pub window: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_address: 100,
            signups_per_address: 20,
            window: Duration::from_secs(5 * 60),
        }
    }
}

/// Who failures are counted against.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A user id, or the login name tried when no such user exists (so that
    /// unknown and known names lock the same way).
    Account(String),
    Address(IpAddr),
    /// Accounts created from this address.
    SignUpsFrom(IpAddr),
}

impl Subject {
    fn key(&self) -> String {
        match self {
            Self::Account(name) => format!("user:{name}"),
            Self::Address(ip) => format!("addr:{ip}"),
            Self::SignUpsFrom(ip) => format!("signup:{ip}"),
        }
    }

    fn too_many(&self) -> &'static str {
        match self {
            Self::SignUpsFrom(_) => "too many accounts created from this address; try again later",
            _ => "too many failed login attempts; try again later",
        }
    }
}

impl LoginThrottle {
    fn limit(&self, subject: &Subject) -> u32 {
        match subject {
            Subject::Account(_) => self.per_account,
            Subject::Address(_) => self.per_address,
            Subject::SignUpsFrom(_) => self.signups_per_address,
        }
    }

    fn window_start(&self, now: OffsetDateTime) -> String {
        clock::format(now - self.window)
    }

    /// 429 if any subject is at its limit.
    #[tracing::instrument(name = "db check", skip_all, fields(otel.kind = "client", db.collection.name = "login_failures"))]
    pub async fn check(&self, pool: &AnyPool, subjects: &[Subject]) -> Result<(), ApiError> {
        let now = OffsetDateTime::now_utc();
        for subject in subjects {
            let limit = self.limit(subject);
            let recent: Vec<(String,)> = sqlx::query_as(
                "SELECT failed_at FROM login_failures WHERE subject = $1 AND failed_at > $2 \
                 ORDER BY failed_at DESC LIMIT $3",
            )
            .bind(subject.key())
            .bind(self.window_start(now))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            if recent.len() as u64 >= u64::from(limit) {
                let oldest = recent
                    .last()
                    .and_then(|(at,)| clock::parse(at))
                    .unwrap_or(now);
                let free_at = oldest + self.window;
                let retry_after =
                    Duration::try_from(free_at - now).unwrap_or(Duration::from_secs(1));
                return Err(ApiError::TooManyRequests {
                    detail: subject.too_many().into(),
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// Counts one failure (or sign-up) against every subject and forgets
    /// expired ones.
    #[tracing::instrument(name = "db record", skip_all, fields(otel.kind = "client", db.collection.name = "login_failures"))]
    pub async fn record(&self, pool: &AnyPool, subjects: &[Subject]) -> Result<(), ApiError> {
        let now = OffsetDateTime::now_utc();
        sqlx::query("DELETE FROM login_failures WHERE failed_at <= $1")
            .bind(self.window_start(now))
            .execute(pool)
            .await?;
        for subject in subjects {
            sqlx::query("INSERT INTO login_failures (subject, failed_at) VALUES ($1, $2)")
                .bind(subject.key())
                .bind(clock::format(now))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A successful login forgives the account's failures.
    #[tracing::instrument(name = "db clear", skip_all, fields(otel.kind = "client", db.collection.name = "login_failures"))]
    pub async fn clear(&self, pool: &AnyPool, subject: &Subject) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM login_failures WHERE subject = $1")
            .bind(subject.key())
            .execute(pool)
            .await?;
        Ok(())
    }
}
