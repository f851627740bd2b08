//! whoami, password change, deactivation (spec: Account management).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json},
    services::accounts::AuthData,
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

pub async fn change_password(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<PasswordBody>,
) -> ApiResult {
    s.check_password_strength(&b.new_password)?;
    s.uia_password(&r, b.auth).await?;
    s.change_password(&r, &b.new_password, b.logout_devices)
        .await?;
    ok(json!({}))
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
    s.uia_password(&r, b.auth).await?;
    s.deactivate(&r.user_id).await?;
    ok(json!({ "id_server_unbind_result": "no-support" }))
}
