//! Joining, inviting, leaving and knocking (spec: Server-server API, Joining Rooms, Inviting
//! to a room, Leaving Rooms, Knocking upon a room).

use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Path, Query},
    services::federation::invite::InviteRequest,
    util::{parse_room_id, parse_user_id},
};

pub async fn make_join(
    State(s): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    req: FedRequest,
) -> ApiResult {
    let versions = versions(&q);
    ok(s.federation()
        .make_join(
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
    ok(s.federation()
        .send_join(
            &req.origin,
            &parse_room_id(&room)?,
            &event_id,
            &event,
            q.omit_members,
        )
        .await?)
}

/// `ver` query parameters (room versions the requesting server supports).
fn versions(q: &Option<String>) -> Vec<String> {
    q.as_deref()
        .map(crate::api::form_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "ver")
        .map(|(_, v)| v)
        .collect()
}

pub async fn invite(
    State(s): State<AppState>,
    Path((room, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> ApiResult {
    let body: InviteRequest = req.json()?;
    ok(s.federation()
        .receive_invite(&req.origin, &parse_room_id(&room)?, &event_id, body)
        .await?)
}

pub async fn make_leave(
    State(s): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    req: FedRequest,
) -> ApiResult {
    ok(s.federation()
        .make_membership(
            &req.origin,
            &parse_room_id(&room)?,
            &parse_user_id(&user)?,
            "leave",
            None,
        )
        .await?)
}

pub async fn send_leave(
    State(s): State<AppState>,
    Path((room, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> ApiResult {
    let event: Value = req.json()?;
    s.federation()
        .take_remote_membership(
            &req.origin,
            &parse_room_id(&room)?,
            &event_id,
            &event,
            "leave",
        )
        .await?;
    ok(json!({}))
}

pub async fn make_knock(
    State(s): State<AppState>,
    Path((room, user)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    req: FedRequest,
) -> ApiResult {
    ok(s.federation()
        .make_membership(
            &req.origin,
            &parse_room_id(&room)?,
            &parse_user_id(&user)?,
            "knock",
            Some(&versions(&q)),
        )
        .await?)
}

pub async fn send_knock(
    State(s): State<AppState>,
    Path((room, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> ApiResult {
    let event: Value = req.json()?;
    ok(s.federation()
        .send_knock(&req.origin, &parse_room_id(&room)?, &event_id, &event)
        .await?)
}
