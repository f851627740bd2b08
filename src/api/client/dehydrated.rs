//! Dehydrated devices (MSC3814, `org.matrix.msc3814.v1`).

use axum::extract::State;
use serde_json::Value;

use crate::api::{ok, ApiResult, AppState, Auth, Json, Path};

pub async fn put(State(s): State<AppState>, Auth(r): Auth, Json(b): Json<Value>) -> ApiResult {
    ok(s.e2ee().put_dehydrated_device(&r.user_id, &b).await?)
}

pub async fn get(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.e2ee().get_dehydrated_device(&r.user_id).await?)
}

pub async fn delete(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.e2ee().delete_dehydrated_device(&r.user_id).await?)
}

pub async fn events(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(device_id): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    ok(s.e2ee()
        .dehydrated_device_events(&r.user_id, &device_id, b["next_batch"].as_str())
        .await?)
}
