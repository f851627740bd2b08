//! Client config: account data, global and per room (spec: Client Config).

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::requester::Requester,
    util::parse_room_id as room,
    Error,
};

fn own(r: &Requester, user: &str) -> Result<(), Error> {
    r.only_own(user, "Cannot access another user's account data")
}

pub async fn get_global(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, kind)): Path<(String, String)>,
) -> ApiResult {
    own(&r, &user)?;
    ok(s.sync().get_account_data(&r.user_id, None, &kind).await?)
}

pub async fn put_global(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, kind)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    own(&r, &user)?;
    s.sync()
        .put_account_data(&r.user_id, None, &kind, &b)
        .await?;
    ok(json!({}))
}

pub async fn get_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, room_id, kind)): Path<(String, String, String)>,
) -> ApiResult {
    own(&r, &user)?;
    ok(s.sync()
        .get_account_data(&r.user_id, Some(&room(&room_id)?), &kind)
        .await?)
}

pub async fn put_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, room_id, kind)): Path<(String, String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    own(&r, &user)?;
    s.sync()
        .put_account_data(&r.user_id, Some(&room(&room_id)?), &kind, &b)
        .await?;
    ok(json!({}))
}
