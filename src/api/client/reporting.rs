//! Reporting content (spec: Reporting content): events and rooms.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    util::parse_room_id,
};

#[derive(Deserialize)]
pub struct EventReport {
    reason: Option<String>,
    score: Option<i64>,
}

pub async fn report_event(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room, event_id)): Path<(String, String)>,
    Json(b): Json<EventReport>,
) -> ApiResult {
    s.rooms()
        .report_event(
            &r.user_id,
            &parse_room_id(&room)?,
            &event_id,
            b.reason.as_deref(),
            b.score,
        )
        .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct RoomReport {
    /// Required since v1.14 but optional in v1.13: a missing reason reads as empty.
    #[serde(default)]
    reason: String,
}

pub async fn report_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Json(b): Json<RoomReport>,
) -> ApiResult {
    s.rooms()
        .report_room(&r.user_id, &parse_room_id(&room)?, &b.reason)
        .await?;
    ok(json!({}))
}
