//! VoIP (spec: Voice over IP): `GET /voip/turnServer`, the TURN server for calls.

use axum::extract::State;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth},
    services::voip,
};

/// The TURN credentials of the caller; `{}` when no TURN server is configured (as Synapse).
pub async fn turn_server(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    let now = u64::try_from(crate::util::now_ms()).unwrap_or(0);
    match voip::turn_credentials(&s.config.turn, &r.user_id, now) {
        Some(c) => ok(json!(c)),
        None => ok(json!({})),
    }
}
