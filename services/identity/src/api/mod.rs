//! identity's public HTTP API (docs/api.md, "identity").
//!
//! - [`account`]: sign-up, the caller's own account, public profiles.
//! - [`session`]: login, token refresh, logout, and the JWKS.
//! - [`deletions`]: admins' view of account erasures, and their retry.
//! - [`keys`]: admins' view of the signing keys, and their rotation.

pub mod account;
pub mod deletions;
pub mod keys;
pub mod session;

use crate::Identity;
use crate::users::{self, UserRecord};
use dure_chassis::ApiError;
use dure_chassis::auth::Claims;
use dure_contracts::Problem;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "dure identity", description = "Accounts, login and tokens."),
    components(schemas(Problem)),
    tags((name = "identity", description = "Accounts, login and tokens"))
)]
struct ApiDoc;

/// The API and its document.
pub fn api(identity: Identity) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut doc) = router().with_state(identity).split_for_parts();
    // After the routes: they bring the schemas the modifier changes.
    account::PasswordNeedsCurrent.modify(&mut doc);
    (router, doc)
}

fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(account::sign_up))
        .routes(routes!(
            account::get_me,
            account::update_me,
            account::delete_me
        ))
        .routes(routes!(account::public_profile))
        .routes(routes!(session::login))
        .routes(routes!(session::refresh))
        .routes(routes!(session::logout))
        .routes(routes!(session::jwks))
        .routes(routes!(deletions::deletion))
        .routes(routes!(deletions::retry))
        .routes(routes!(keys::list, keys::rotate))
}

/// The account behind a verified token. A deleted account's tokens stop here,
/// even while they have not expired.
async fn current_user(identity: &Identity, claims: &Claims) -> Result<UserRecord, ApiError> {
    users::by_id(identity.db.pool(), &claims.sub)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the account of this token no longer exists".into()))
}
