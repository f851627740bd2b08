//! Typing notifications (spec: Typing Notifications).

use axum::extract::State;
use ruma::{RoomId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    Error,
};

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
    let room = RoomId::parse(&room).map_err(|_| Error::invalid_param("Invalid room id"))?;
    let user = UserId::parse(&user).map_err(|_| Error::invalid_param("Invalid user id"))?;
    if user != r.user_id {
        return Err(Error::forbidden("Cannot set another user's typing state"));
    }
    s.set_typing(&r.user_id, &room, b.typing, b.timeout).await?;
    ok(json!({}))
}
