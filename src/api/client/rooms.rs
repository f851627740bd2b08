//! Room creation, aliases, directory visibility, joined rooms (spec: Rooms, Room aliases).

use axum::extract::State;
use ruma::{RoomAliasId, RoomId};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::rooms::create::CreateRoomRequest,
    store::Db,
    Error,
};

pub async fn create(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<CreateRoomRequest>,
) -> ApiResult {
    let room_id = s.create_room(&r.user_id, b).await?;
    ok(json!({ "room_id": room_id }))
}

fn parse_alias(alias: &str) -> Result<ruma::OwnedRoomAliasId, Error> {
    RoomAliasId::parse(alias).map_err(|_| Error::invalid_param("Invalid room alias"))
}

pub async fn get_alias(State(s): State<AppState>, Path(alias): Path<String>) -> ApiResult {
    let alias = parse_alias(&alias)?;
    let (room, _) =
        s.db.alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
    ok(json!({ "room_id": room, "servers": [s.server_name] }))
}

#[derive(Deserialize)]
pub struct PutAlias {
    room_id: String,
}

pub async fn put_alias(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(alias): Path<String>,
    Json(b): Json<PutAlias>,
) -> ApiResult {
    let alias = parse_alias(&alias)?;
    if alias.server_name() != s.server_name {
        return Err(Error::invalid_param("Alias must be on this server"));
    }
    let room = RoomId::parse(&b.room_id).map_err(|_| Error::invalid_param("Invalid room id"))?;
    if s.db.room_version(room.as_str()).await?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    let mut tx = s.db.begin_write().await?;
    if !Db::insert_alias(
        &mut tx.tx,
        alias.as_str(),
        room.as_str(),
        r.user_id.as_str(),
    )
    .await?
    {
        return Err(Error::new(
            axum::http::StatusCode::CONFLICT,
            "M_UNKNOWN",
            "Room alias already exists",
        ));
    }
    tx.commit().await?;
    ok(json!({}))
}

pub async fn delete_alias(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(alias): Path<String>,
) -> ApiResult {
    let alias = parse_alias(&alias)?;
    let (room, creator) =
        s.db.alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
    if creator != r.user_id.as_str() && !r.is_admin {
        // Room admins may remove aliases too.
        let room_id = RoomId::parse(&room).map_err(|e| Error::unknown(e.to_string()))?;
        let guard = s.lock_room(&room_id).await?;
        let allowed = guard.as_ref().is_some_and(|st| {
            st.user_power(&r.user_id) >= st.action_power("state_default").max(50)
        });
        if !allowed {
            return Err(Error::forbidden("You cannot delete this alias"));
        }
    }
    s.db.delete_alias(alias.as_str()).await?;
    ok(json!({}))
}

pub async fn room_aliases(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult {
    let room_id = RoomId::parse(&room).map_err(|_| Error::invalid_param("Invalid room id"))?;
    // Only members may list aliases (the spec allows world_readable rooms too).
    s.room_state_event(&r.user_id, &room_id, "m.room.create", "")
        .await?;
    ok(json!({ "aliases": s.db.room_aliases(room_id.as_str()).await? }))
}

pub async fn get_visibility(State(s): State<AppState>, Path(room): Path<String>) -> ApiResult {
    let room_id = RoomId::parse(&room).map_err(|_| Error::invalid_param("Invalid room id"))?;
    if s.db.room_version(room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    let public = s.db.room_is_public(room_id.as_str()).await?;
    ok(json!({ "visibility": if public { "public" } else { "private" } }))
}

#[derive(Deserialize)]
pub struct Visibility {
    visibility: String,
}

pub async fn set_visibility(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Json(b): Json<Visibility>,
) -> ApiResult {
    let room_id = RoomId::parse(&room).map_err(|_| Error::invalid_param("Invalid room id"))?;
    let public = match b.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => return Err(Error::invalid_param("visibility must be public or private")),
    };
    let guard = s.lock_room(&room_id).await?;
    let st = guard
        .as_ref()
        .ok_or_else(|| Error::not_found("Unknown room"))?;
    let needed = st.power_levels()["events"]["m.room.canonical_alias"]
        .as_i64()
        .unwrap_or(50);
    if !r.is_admin && st.user_power(&r.user_id) < needed {
        return Err(Error::forbidden("You cannot change this room's visibility"));
    }
    drop(guard);
    s.db.set_room_public(room_id.as_str(), public).await?;
    ok(json!({}))
}

pub async fn joined_rooms(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    let rooms: Vec<String> =
        s.db.user_memberships(r.user_id.as_str())
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect();
    ok(json!({ "joined_rooms": rooms }))
}
