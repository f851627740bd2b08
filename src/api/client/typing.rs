//! Typing notifications (spec: Typing Notifications).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ok, ApiResult, AppState, Auth, Json, Path};

#[derive(Deserialize)]
pub struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

pub async fn set(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room, user)): Path<(String, String)>,
    Json(b): Json<TypingBody>,
) -> ApiResult {
    let room = crate::util::parse_room_id(&room)?;
    r.only_own(&user, "Cannot set another user's typing state")?;
    s.sync()
        .set_typing(&r.user_id, &room, b.typing, b.timeout)
        .await?;
    ok(json!({}))
}
