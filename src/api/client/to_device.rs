//! Send-to-device messaging (spec: Send-to-Device messaging).

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    Error,
};

pub async fn send(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((kind, txn)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    let messages = b["messages"]
        .as_object()
        .ok_or_else(|| Error::bad_json("messages must be an object"))?;
    s.e2ee()
        .send_to_device(&r.user_id, &r.device_id, &kind, &txn, messages)
        .await?;
    ok(json!({}))
}
