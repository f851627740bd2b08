//! Room directory (`/publicRooms`) and user directory (`/user_directory/search`)
//! (spec: Listing rooms in the room directory, User directory).

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Query},
    services::rooms::directory::PublicRoomsRequest,
    Error,
};

#[derive(Deserialize)]
pub struct PublicRoomsQuery {
    limit: Option<String>,
    since: Option<String>,
    server: Option<String>,
}

fn parse_limit(limit: Option<&str>) -> Result<Option<i64>, Error> {
    limit
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| Error::invalid_param("limit must be an integer"))
        })
        .transpose()
}

pub async fn public_rooms(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<PublicRoomsQuery>,
) -> ApiResult {
    let req = PublicRoomsRequest {
        limit: parse_limit(q.limit.as_deref())?,
        since: q.since,
        ..Default::default()
    };
    ok(s.rooms()
        .public_rooms(&r.user_id, q.server.as_deref(), req)
        .await?)
}

#[derive(Deserialize)]
pub struct ServerQuery {
    server: Option<String>,
}

pub async fn search_public_rooms(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<ServerQuery>,
    Json(b): Json<PublicRoomsRequest>,
) -> ApiResult {
    ok(s.rooms()
        .public_rooms(&r.user_id, q.server.as_deref(), b)
        .await?)
}

#[derive(Deserialize)]
pub struct UserSearch {
    search_term: String,
    limit: Option<Value>,
}

pub async fn search_users(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<UserSearch>,
) -> ApiResult {
    let limit = match b.limit {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| Error::bad_json("limit must be an integer"))?,
        ),
    };
    ok(s.accounts()
        .search_user_directory(&r.user_id, &b.search_term, limit)
        .await?)
}
