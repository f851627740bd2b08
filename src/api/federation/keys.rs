//! Server keys (spec: Server-server API, Retrieving server keys).

use axum::extract::State;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState},
    util,
};

pub async fn server_keys(State(s): State<AppState>) -> ApiResult {
    ok(s.keys
        .server_key_response(s.server_name.as_str(), util::now_ms()))
}

pub async fn version() -> ApiResult {
    ok(json!({ "server": { "name": "Palabre", "version": env!("CARGO_PKG_VERSION") } }))
}
