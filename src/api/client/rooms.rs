//! Room creation, aliases, directory visibility, joined rooms, upgrades (spec: Rooms, Room
//! aliases, Room upgrades).

use axum::extract::State;
use ruma::RoomAliasId;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::rooms::create::CreateRoomRequest,
    Error,
};

pub async fn create(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<CreateRoomRequest>,
) -> ApiResult {
    let room_id = s.rooms().create_room(&r.user_id, b).await?;
    ok(json!({ "room_id": room_id }))
}

fn parse_alias(alias: &str) -> Result<ruma::OwnedRoomAliasId, Error> {
    RoomAliasId::parse(alias).map_err(|_| Error::invalid_param("Invalid room alias"))
}

fn parse_room(room: &str) -> Result<ruma::OwnedRoomId, Error> {
    crate::util::parse_room_id(room)
}

pub async fn get_alias(State(s): State<AppState>, Path(alias): Path<String>) -> ApiResult {
    let (room, servers) = s.federation().lookup_alias(&parse_alias(&alias)?).await?;
    ok(json!({ "room_id": room, "servers": servers }))
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
    if !s
        .rooms()
        .create_alias(&r, &parse_alias(&alias)?, &parse_room(&b.room_id)?)
        .await?
    {
        return Err(Error::conflict("Room alias already exists"));
    }
    ok(json!({}))
}

pub async fn delete_alias(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(alias): Path<String>,
) -> ApiResult {
    s.rooms().remove_alias(&r, &parse_alias(&alias)?).await?;
    ok(json!({}))
}

pub async fn room_aliases(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
) -> ApiResult {
    ok(json!({ "aliases": s.rooms().room_aliases(&r.user_id, &parse_room(&room)?).await? }))
}

pub async fn get_visibility(State(s): State<AppState>, Path(room): Path<String>) -> ApiResult {
    let public = s.rooms().room_is_public(&parse_room(&room)?).await?;
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
    let public = match b.visibility.as_str() {
        "public" => true,
        "private" => false,
        _ => return Err(Error::invalid_param("visibility must be public or private")),
    };
    s.rooms()
        .set_room_public(&r, &parse_room(&room)?, public)
        .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct Upgrade {
    new_version: String,
    #[serde(default)]
    additional_creators: Vec<String>,
}

pub async fn upgrade(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Json(b): Json<Upgrade>,
) -> ApiResult {
    let new_room = s
        .rooms()
        .upgrade_room(
            &r.user_id,
            &parse_room(&room)?,
            &b.new_version,
            &b.additional_creators,
        )
        .await?;
    ok(json!({ "replacement_room": new_room }))
}

pub async fn joined_rooms(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(json!({ "joined_rooms": s.rooms().joined_rooms(&r.user_id).await? }))
}
