//! Tchap email invites between the federation's servers (`fr.gouv.tchap` unstable prefix):
//! an invitation announced to the address's server, and a bound address reported back to the
//! inviting server. Signed (X-Matrix) requests from peer servers only.

use axum::extract::State;
use serde_json::{json, Value};

use super::auth::FedRequest;
use crate::api::{ok, ApiResult, AppState};

pub async fn email_invite(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let body: Value = req.json()?;
    s.policy().receive_email_invite(&req.origin, &body).await?;
    ok(json!({}))
}

pub async fn email_bound(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let body: Value = req.json()?;
    s.policy().receive_email_bound(&req.origin, &body).await?;
    ok(json!({}))
}
