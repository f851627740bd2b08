//! Room tagging (spec: Room tagging), stored as the `m.tag` room account data.

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::requester::Requester,
    util::parse_room_id,
    Error,
};

fn own(r: &Requester, user: &str) -> Result<(), Error> {
    r.only_own(user, "Cannot access another user's tags")
}

pub async fn get(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, room)): Path<(String, String)>,
) -> ApiResult {
    own(&r, &user)?;
    let tags = s
        .sync()
        .room_tags(&r.user_id, &parse_room_id(&room)?)
        .await?;
    ok(json!({ "tags": tags }))
}

pub async fn put(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    own(&r, &user)?;
    s.sync()
        .set_room_tag(&r.user_id, &parse_room_id(&room)?, &tag, b)
        .await?;
    ok(json!({}))
}

pub async fn delete(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, room, tag)): Path<(String, String, String)>,
) -> ApiResult {
    own(&r, &user)?;
    s.sync()
        .delete_room_tag(&r.user_id, &parse_room_id(&room)?, &tag)
        .await?;
    ok(json!({}))
}
