//! The first admin: created from `DURE_ADMIN_PASSWORD` when no admin exists.

use crate::passwords::Passwords;
use crate::users::{self, UserRecord};
use dure_chassis::config::Secret;
use dure_chassis::db::Db;
use dure_chassis::events::Outbox;
use dure_chassis::{ApiError, clock};

pub const ADMIN_USERNAME: &str = "admin";

pub async fn ensure_first_admin(
    outbox: &Outbox,
    db: &Db,
    passwords: &Passwords,
    password: Option<&Secret>,
) -> anyhow::Result<()> {
    if users::any_admin(db.pool()).await.map_err(api_to_anyhow)? {
        return Ok(());
    }
    let Some(password) = password else {
        tracing::warn!("no admin account exists; set DURE_ADMIN_PASSWORD to create user `admin`");
        return Ok(());
    };
    if users::by_login_name(db.pool(), ADMIN_USERNAME)
        .await
        .map_err(api_to_anyhow)?
        .is_some()
    {
        // Never promote an existing account silently.
        tracing::error!("user `admin` exists but is not an admin; not creating the first admin");
        return Ok(());
    }
    let record = UserRecord {
        id: uuid::Uuid::now_v7().to_string(),
        username: ADMIN_USERNAME.into(),
        email: "admin@localhost".into(),
        display_name: "Administrator".into(),
        password_hash: passwords.hash(password.expose()).await?,
        role: "admin".into(),
        created_at: clock::now(),
    };
    let mut tx = db.begin().await.map_err(anyhow::Error::from)?;
    let inserted = match users::insert(&mut tx, &record).await {
        Ok(()) => {
            outbox
                .append(&mut tx, &crate::events::registered(&record))
                .await
        }
        Err(err) => Err(err),
    };
    match inserted {
        Ok(()) => {
            outbox.commit(tx).await.map_err(anyhow::Error::from)?;
            tracing::info!(user_id = %record.id, "created the first admin account `admin`");
        }
        // Another replica created it at the same moment.
        Err(ApiError::Conflict(_)) => {}
        Err(err) => return Err(api_to_anyhow(err)),
    }
    Ok(())
}

fn api_to_anyhow(err: ApiError) -> anyhow::Error {
    match err {
        ApiError::Internal(cause) => cause,
        other => anyhow::anyhow!(other.to_string()),
    }
}
