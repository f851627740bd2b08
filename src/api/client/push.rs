//! Push rules (spec: Push notifications). The server-default rule set, which clients read at
//! start (matrix-js-sdk waits for it before its first sync).

use axum::extract::State;
use serde_json::json;

use crate::api::{ok, ApiResult, AppState, Auth};

pub async fn get_all(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(json!({ "global": s.push_rules(&r.user_id)? }))
}

pub async fn get_global(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.push_rules(&r.user_id)?)
}
