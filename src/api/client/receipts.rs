//! Receipts and read markers (spec: Receipts, Fully read markers).

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    util::parse_room_id as room,
    Error,
};

pub async fn receipt(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room_id, kind, event_id)): Path<(String, String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    let thread = match &b["thread_id"] {
        Value::Null => None,
        Value::String(t) if !t.is_empty() => Some(t.as_str()),
        _ => return Err(Error::bad_json("thread_id must be a non-empty string")),
    };
    s.sync()
        .set_receipt(&r.user_id, &room(&room_id)?, &kind, &event_id, thread)
        .await?;
    ok(json!({}))
}

pub async fn read_markers(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room_id): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    let room = room(&room_id)?;
    for kind in ["m.fully_read", "m.read", "m.read.private"] {
        match &b[kind] {
            Value::Null => {}
            Value::String(ev) => {
                s.sync()
                    .set_receipt(&r.user_id, &room, kind, ev, None)
                    .await?
            }
            _ => return Err(Error::bad_json(format!("{kind} must be an event id"))),
        }
    }
    ok(json!({}))
}
