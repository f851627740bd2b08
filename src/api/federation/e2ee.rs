//! Device lists and end-to-end encryption keys of this server's users, for other servers
//! (spec: Server-server API, Device Management, End-to-End Encryption).

use axum::extract::State;
use serde_json::{Map, Value};

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Path},
    Error,
};

fn object(body: &Value, field: &str) -> Result<Map<String, Value>, Error> {
    match &body[field] {
        Value::Object(m) => Ok(m.clone()),
        _ => Err(Error::bad_json(format!("{field} must be an object"))),
    }
}

pub async fn user_devices(
    State(s): State<AppState>,
    Path(user): Path<String>,
    _req: FedRequest,
) -> ApiResult {
    let user = crate::util::parse_user_id(&user)?;
    ok(s.e2ee().federation_user_devices(&user).await?)
}

pub async fn query(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let body: Value = req.json()?;
    ok(s.e2ee()
        .federation_query_keys(&req.origin, &object(&body, "device_keys")?)
        .await?)
}

pub async fn claim(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let body: Value = req.json()?;
    ok(s.e2ee()
        .federation_claim_keys(&object(&body, "one_time_keys")?)
        .await?)
}
