//! Presence (spec: Presence).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ok, ApiResult, AppState, Auth, Json, Path};

#[derive(Deserialize)]
pub struct PresenceBody {
    presence: String,
    #[serde(default, deserialize_with = "present")]
    status_msg: Option<Option<String>>,
}

/// Distinguishes an absent `status_msg` (keep) from `null` (clear).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

pub async fn set(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    Json(b): Json<PresenceBody>,
) -> ApiResult {
    r.only_own(&user, "Cannot set another user's presence")?;
    s.sync()
        .set_presence(&r.user_id, &b.presence, b.status_msg)
        .await?;
    ok(json!({}))
}

pub async fn get(State(s): State<AppState>, Auth(r): Auth, Path(user): Path<String>) -> ApiResult {
    let target = crate::util::parse_user_id(&user)?;
    ok(s.sync().get_presence(&r.user_id, &target).await?)
}
