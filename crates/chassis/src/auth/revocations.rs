//! Users whose tokens are refused although they have not expired: their
//! account was deleted. Each service that checks tokens keeps them in its
//! own table (`revoked_users`, created here), fed by identity's
//! `user.deleted` events ([`RevokeDeletedUsers`]), and in memory for the
//! check on each request.

#[cfg(feature = "storage")]
use crate::db::{Backend, Db, Tx};
#[cfg(feature = "storage")]
use crate::events::Handler;
#[cfg(feature = "storage")]
use dure_contracts::events::{Envelope, Payload, UserDeleted};
#[cfg(feature = "storage")]
use futures_util::future::BoxFuture;
#[cfg(feature = "storage")]
use sqlx::{AssertSqlSafe, Executor};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[cfg(feature = "storage")]
const SQLITE: &str = "CREATE TABLE IF NOT EXISTS revoked_users (
    user_id TEXT PRIMARY KEY,
    until   TEXT NOT NULL
)";

#[cfg(feature = "storage")]
const POSTGRES: &str = r#"CREATE TABLE IF NOT EXISTS revoked_users (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    until   TEXT COLLATE "C" NOT NULL
)"#;

/// The revoked users of one service, in memory.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    until: Arc<RwLock<HashMap<String, time::OffsetDateTime>>>,
}

#[cfg(feature = "storage")]
impl Revocations {
    /// Creates the table if missing and loads the revocations that still
    /// matter.
    pub async fn load(db: &Db) -> anyhow::Result<Self> {
        let ddl = match db.backend() {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        db.writer().execute(AssertSqlSafe(ddl)).await?;
        let now = crate::clock::now();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, until FROM revoked_users WHERE until > $1")
                .bind(now)
                .fetch_all(db.pool())
                .await?;
        let until = rows
            .into_iter()
            .filter_map(|(user, until)| Some((user, crate::clock::parse(&until)?)))
            .collect();
        Ok(Self {
            until: Arc::new(RwLock::new(until)),
        })
    }

    /// Records in `tx` that `user_id`'s tokens are void until `until`.
    pub async fn revoke(&self, tx: &mut Tx, user_id: &str, until: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO revoked_users (user_id, until) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET until = excluded.until",
        )
        .bind(user_id)
        .bind(until)
        .execute(&mut **tx)
        .await?;
        if let (Ok(mut map), Some(at)) = (self.until.write(), crate::clock::parse(until)) {
            map.insert(user_id.to_owned(), at);
        }
        Ok(())
    }
}

impl Revocations {
    pub fn is_revoked(&self, user_id: &str) -> bool {
        self.until
            .read()
            .map(|map| {
                map.get(user_id)
                    .is_some_and(|until| *until > time::OffsetDateTime::now_utc())
            })
            .unwrap_or(false)
    }
}

/// The handler every service that checks tokens needs: `user.deleted` voids
/// the user's remaining access tokens here too.
#[cfg(feature = "storage")]
pub struct RevokeDeletedUsers(pub Revocations);

#[cfg(feature = "storage")]
impl Handler for RevokeDeletedUsers {
    fn wants(&self, event_type: &str) -> bool {
        event_type == UserDeleted::TYPE
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let deleted: UserDeleted = event.payload()?;
            self.0
                .revoke(tx, &deleted.user_id, &deleted.tokens_valid_until)
                .await
        })
    }
}
