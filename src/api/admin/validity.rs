//! `POST /_synapse/admin/v1/account_validity/validity`: set (or renew) an account's expiry.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::{
    api::{ok, ApiResult, AppState, Json},
    util::parse_user_id,
};

#[derive(Deserialize)]
pub struct Body {
    user_id: String,
    /// Milliseconds since the epoch; absent: now + the validity period.
    expiration_ts: Option<i64>,
    /// Absent: unchanged (on for an account without a setting).
    enable_renewal_emails: Option<bool>,
}

pub async fn set(State(s): State<AppState>, Admin(_): Admin, Json(b): Json<Body>) -> ApiResult {
    let user = parse_user_id(&b.user_id)?;
    let expiration_ts = s
        .policy()
        .admin_set_validity(&user, b.expiration_ts, b.enable_renewal_emails)
        .await?;
    ok(json!({ "expiration_ts": expiration_ts }))
}
