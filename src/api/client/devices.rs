//! Device management (spec: Device management).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::requester::AuthData,
    store::users::DeviceRow,
};

fn device_json(d: DeviceRow) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ts": d.last_seen_ts,
        "last_seen_ip": d.last_seen_ip,
    })
}

pub async fn list(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    let devices: Vec<Value> = s
        .accounts()
        .devices(&r.user_id)
        .await?
        .into_iter()
        .map(device_json)
        .collect();
    ok(json!({ "devices": devices }))
}

pub async fn get(State(s): State<AppState>, Auth(r): Auth, Path(id): Path<String>) -> ApiResult {
    ok(device_json(s.accounts().device(&r.user_id, &id).await?))
}

#[derive(Deserialize)]
pub struct RenameBody {
    display_name: Option<String>,
}

pub async fn rename(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<RenameBody>,
) -> ApiResult {
    s.accounts()
        .rename_device(&r.user_id, &id, b.display_name.as_deref())
        .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct AuthBody {
    auth: Option<AuthData>,
}

pub async fn delete(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Json(b): Json<AuthBody>,
) -> ApiResult {
    s.accounts().device(&r.user_id, &id).await?;
    s.accounts().uia_password(&r, b.auth).await?;
    s.accounts().delete_devices(&r.user_id, &[id]).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct DeleteManyBody {
    auth: Option<AuthData>,
    devices: Vec<String>,
}

pub async fn delete_many(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<DeleteManyBody>,
) -> ApiResult {
    s.accounts().uia_password(&r, b.auth).await?;
    s.accounts().delete_devices(&r.user_id, &b.devices).await?;
    ok(json!({}))
}
