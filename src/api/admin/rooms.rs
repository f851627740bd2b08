//! The room admin API (Synapse's `rooms.py`): the room list, details, members, state, blocks,
//! forward extremities, and room deletion with its status.

use axum::{
    extract::{RawQuery, State},
    routing::get,
    Router,
};
use serde::Deserialize;
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Json, Path},
    services::admin::{DeleteRoom, RoomListParams},
    util::parse_room_id,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_synapse/admin/v1/rooms", get(list))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}",
            get(details).delete(delete_v1),
        )
        .route(
            "/_synapse/admin/v2/rooms/{room_id}",
            axum::routing::delete(delete_v2),
        )
        .route(
            "/_synapse/admin/v2/rooms/{room_id}/delete_status",
            get(room_delete_status),
        )
        .route(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}",
            get(delete_status),
        )
        .route("/_synapse/admin/v1/rooms/{room_id}/members", get(members))
        .route("/_synapse/admin/v1/rooms/{room_id}/state", get(state))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/block",
            get(block).put(set_block),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/forward_extremities",
            get(extremities),
        )
}

async fn list(State(s): State<AppState>, Admin(_): Admin, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let params = RoomListParams {
        from: p.int("from")?,
        limit: p.int("limit")?,
        order_by: p.str("order_by"),
        dir: p.str("dir"),
        search_term: p.str("search_term"),
        public_rooms: p.bool("public_rooms")?,
        empty_rooms: p.bool("empty_rooms")?,
    };
    ok(s.admin().list_rooms(params).await?)
}

async fn details(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    ok(s.admin().room_details(&parse_room_id(&room)?).await?)
}

async fn members(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    ok(s.admin().room_members(&parse_room_id(&room)?).await?)
}

async fn state(State(s): State<AppState>, Admin(_): Admin, Path(room): Path<String>) -> ApiResult {
    ok(s.admin().room_state(&parse_room_id(&room)?).await?)
}

async fn block(State(s): State<AppState>, Admin(_): Admin, Path(room): Path<String>) -> ApiResult {
    ok(s.admin().room_block(&parse_room_id(&room)?).await?)
}

#[derive(Deserialize)]
struct BlockBody {
    block: bool,
}

async fn set_block(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    Json(b): Json<BlockBody>,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    s.admin().set_room_block(&a.user_id, &room, b.block).await?;
    audit(
        &a,
        if b.block {
            "block_room"
        } else {
            "unblock_room"
        },
        room.as_str(),
    );
    ok(json!({ "block": b.block }))
}

async fn extremities(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    ok(s.admin()
        .forward_extremities(&parse_room_id(&room)?)
        .await?)
}

/// The body of a deletion; an empty body is Synapse's defaults.
fn delete_body(body: &[u8]) -> Result<DeleteRoom, crate::Error> {
    if body.is_empty() {
        return Ok(serde_json::from_value(json!({}))?);
    }
    crate::api::json_body(body, crate::api::Nul::Refused)
}

/// v1: the deletion runs before the answer, which is its result.
async fn delete_v1(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let req = delete_body(&body)?;
    audit(&a, "delete_room", room.as_str());
    ok(s.admin().delete_room(&a.user_id, &room, req, true).await?)
}

/// v2: the deletion is a background job; the answer is its `delete_id`.
async fn delete_v2(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let req = delete_body(&body)?;
    let v = s.admin().delete_room(&a.user_id, &room, req, false).await?;
    audit(&a, "delete_room", room.as_str());
    ok(v)
}

async fn room_delete_status(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    ok(s.admin().room_delete_status(&parse_room_id(&room)?).await?)
}

async fn delete_status(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.admin().delete_status(&id).await?)
}
