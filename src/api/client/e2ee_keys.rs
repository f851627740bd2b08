//! End-to-end encryption keys (spec: End-to-End Encryption — key management, cross-signing).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Query},
    services::{
        e2ee::{device_keys::KeyUpload, federation::remote_timeout},
        requester::AuthData,
    },
    Error,
};

fn object<'a>(body: &'a Value, field: &str) -> Result<&'a Map<String, Value>, Error> {
    body[field]
        .as_object()
        .ok_or_else(|| Error::bad_json(format!("{field} must be an object")))
}

pub async fn upload(State(s): State<AppState>, Auth(r): Auth, Json(b): Json<Value>) -> ApiResult {
    if !b.is_object() {
        return Err(Error::bad_json("Body must be an object"));
    }
    let up = KeyUpload::from_json(&b)?;
    ok(s.e2ee().upload_keys(&r.user_id, &r.device_id, up).await?)
}

pub async fn query(State(s): State<AppState>, Auth(r): Auth, Json(b): Json<Value>) -> ApiResult {
    let timeout = remote_timeout(b["timeout"].as_u64());
    ok(s.e2ee()
        .query_keys(&r.user_id, object(&b, "device_keys")?, timeout)
        .await?)
}

pub async fn claim(State(s): State<AppState>, Auth(_r): Auth, Json(b): Json<Value>) -> ApiResult {
    let timeout = remote_timeout(b["timeout"].as_u64());
    ok(s.e2ee()
        .claim_keys(object(&b, "one_time_keys")?, timeout)
        .await?)
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    from: String,
    to: String,
}

pub async fn changes(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<ChangesQuery>,
) -> ApiResult {
    let (changed, left) = s.e2ee().keys_changes(&r.user_id, &q.from, &q.to).await?;
    ok(json!({ "changed": changed, "left": left }))
}

pub async fn device_signing_upload(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<Value>,
) -> ApiResult {
    if !b.is_object() {
        return Err(Error::bad_json("Body must be an object"));
    }
    let auth: Option<AuthData> = match b.get("auth") {
        None | Some(Value::Null) => None,
        Some(a) => {
            Some(serde_json::from_value(a.clone()).map_err(|e| Error::bad_json(e.to_string()))?)
        }
    };
    s.e2ee().upload_cross_signing_keys(&r, &b, auth).await?;
    ok(json!({}))
}

pub async fn signatures_upload(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<Value>,
) -> ApiResult {
    let body = b
        .as_object()
        .ok_or_else(|| Error::bad_json("Body must be an object"))?;
    ok(s.e2ee().upload_signatures(&r, body).await?)
}
