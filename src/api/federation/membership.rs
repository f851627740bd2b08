//! Joining rooms (spec: Server-server API, Joining Rooms).

use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::Value;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Path, Query},
    util::{parse_room_id, parse_user_id},
};

pub async fn make_join(
    State(s): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    req: FedRequest,
) -> ApiResult {
    let versions: Vec<String> = q
        .as_deref()
        .map(crate::api::form_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "ver")
        .map(|(_, v)| v)
        .collect();
    ok(s.make_join(
        &req.origin,
        &parse_room_id(&room)?,
        &parse_user_id(&user)?,
        &versions,
    )
    .await?)
}

#[derive(Deserialize, Default)]
pub struct SendJoinQuery {
    #[serde(default)]
    omit_members: bool,
}

pub async fn send_join(
    State(s): State<AppState>,
    Path((room, event_id)): Path<(String, String)>,
    Query(q): Query<SendJoinQuery>,
    req: FedRequest,
) -> ApiResult {
    let event: Value = req.json()?;
    ok(s.send_join(
        &req.origin,
        &parse_room_id(&room)?,
        &event_id,
        &event,
        q.omit_members,
    )
    .await?)
}
