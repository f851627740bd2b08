//! Joining, inviting, leaving, kicking, banning; member lists (spec: Room membership).

use crate::services::rooms::MemberOp;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path, Query},
    util::{parse_room_id as room, parse_user_id as user},
    Error,
};

#[derive(Deserialize, Default)]
pub struct ReasonBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
pub struct TargetBody {
    user_id: String,
    reason: Option<String>,
}

/// `server_name` / `via` query parameters (repeated): servers that can help join.
pub(super) fn via(q: &Option<String>) -> Vec<ruma::OwnedServerName> {
    q.as_deref()
        .map(crate::api::form_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "server_name" || k == "via")
        .filter_map(|(_, v)| ruma::ServerName::parse(&v).ok())
        .collect()
}

pub async fn join(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(target): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    Json(b): Json<ReasonBody>,
) -> ApiResult {
    let room_id = s
        .rooms()
        .join_room(&r.user_id, &target, b.reason.as_deref(), via(&q))
        .await?;
    ok(json!({ "room_id": room_id }))
}

pub async fn knock(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(target): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    Json(b): Json<ReasonBody>,
) -> ApiResult {
    let room_id = s
        .rooms()
        .knock_room(&r.user_id, &target, b.reason.as_deref(), via(&q))
        .await?;
    ok(json!({ "room_id": room_id }))
}

pub async fn join_by_id(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(target): Path<String>,
    Json(b): Json<ReasonBody>,
) -> ApiResult {
    room(&target)?;
    let room_id = s
        .rooms()
        .join_room(&r.user_id, &target, b.reason.as_deref(), vec![])
        .await?;
    ok(json!({ "room_id": room_id }))
}

#[derive(Deserialize)]
pub struct InviteBody {
    user_id: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    is_direct: bool,
    /// Third-party (email) invite: `medium`, `address` (`id_server` is this server).
    medium: Option<String>,
    address: Option<String>,
}

pub async fn invite(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<InviteBody>,
) -> ApiResult {
    if let (None, Some(medium), Some(address)) = (&b.user_id, &b.medium, &b.address) {
        if medium != "email" {
            return Err(Error::invalid_param("Only email invites are supported"));
        }
        s.policy()
            .invite_by_email(&r, &room(&id)?, address, b.reason.as_deref())
            .await?;
        return ok(json!({}));
    }
    let target = b
        .user_id
        .as_deref()
        .ok_or_else(|| Error::bad_json("Missing user_id"))?;
    let extra = b.is_direct.then(|| json!({ "is_direct": true }));
    s.rooms()
        .set_membership(
            &r.user_id,
            &room(&id)?,
            &user(target)?,
            MemberOp::Invite,
            b.reason.as_deref(),
            extra,
        )
        .await?;
    ok(json!({}))
}

pub async fn leave(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<ReasonBody>,
) -> ApiResult {
    s.rooms()
        .leave_room(&r.user_id, &room(&id)?, b.reason.as_deref())
        .await?;
    ok(json!({}))
}

pub async fn forget(State(s): State<AppState>, Auth(r): Auth, Path(id): Path<String>) -> ApiResult {
    s.rooms().forget_room(&r.user_id, &room(&id)?).await?;
    ok(json!({}))
}

pub async fn kick(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<TargetBody>,
) -> ApiResult {
    s.rooms()
        .set_membership(
            &r.user_id,
            &room(&id)?,
            &user(&b.user_id)?,
            MemberOp::Leave,
            b.reason.as_deref(),
            None,
        )
        .await?;
    ok(json!({}))
}

pub async fn ban(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<TargetBody>,
) -> ApiResult {
    s.rooms()
        .set_membership(
            &r.user_id,
            &room(&id)?,
            &user(&b.user_id)?,
            MemberOp::Ban,
            b.reason.as_deref(),
            None,
        )
        .await?;
    ok(json!({}))
}

pub async fn unban(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<TargetBody>,
) -> ApiResult {
    let room_id = room(&id)?;
    let target = user(&b.user_id)?;
    s.rooms()
        .set_membership(
            &r.user_id,
            &room_id,
            &target,
            MemberOp::Unban,
            b.reason.as_deref(),
            None,
        )
        .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct MembersQuery {
    membership: Option<String>,
    not_membership: Option<String>,
}

pub async fn members(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> ApiResult {
    let chunk = s
        .rooms()
        .room_members(
            &r.user_id,
            &room(&id)?,
            q.membership.as_deref(),
            q.not_membership.as_deref(),
        )
        .await?;
    ok(json!({ "chunk": chunk }))
}

pub async fn joined_members(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.rooms().joined_members(&r.user_id, &room(&id)?).await?)
}
