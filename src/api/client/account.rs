//! whoami, password change and reset, deactivation, password policy (spec: Account management).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, MaybeAuth},
    services::requester::AuthData,
};

pub async fn whoami(Auth(r): Auth) -> ApiResult {
    ok(json!({ "user_id": r.user_id, "device_id": r.device_id, "is_guest": false }))
}

#[derive(Deserialize)]
pub struct PasswordBody {
    auth: Option<AuthData>,
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

fn yes() -> bool {
    true
}

/// `POST /account/password`: logged in, with the password stage; or, without an access token,
/// a password reset with a validated email (`m.login.email.identity`).
pub async fn change_password(
    State(s): State<AppState>,
    MaybeAuth(r): MaybeAuth,
    Json(b): Json<PasswordBody>,
) -> ApiResult {
    s.policy().check_password_strength(&b.new_password)?;
    match r {
        Some(r) => {
            s.accounts().uia_password(&r, b.auth).await?;
            s.accounts()
                .change_password(&r, &b.new_password, b.logout_devices)
                .await?;
        }
        None => {
            s.accounts()
                .reset_password_unauthenticated(b.auth, &b.new_password, b.logout_devices)
                .await?
        }
    }
    ok(json!({}))
}

/// `GET /password_policy` (no auth): the policy new passwords must follow, `{}` without one.
pub async fn password_policy(State(s): State<AppState>) -> ApiResult {
    ok(s.policy().password_policy_json())
}

#[derive(Deserialize)]
pub struct DeactivateBody {
    auth: Option<AuthData>,
}

pub async fn deactivate(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<DeactivateBody>,
) -> ApiResult {
    s.accounts().uia_password(&r, b.auth).await?;
    s.accounts().deactivate(&r.user_id).await?;
    ok(json!({ "id_server_unbind_result": "no-support" }))
}
