//! `POST /_synapse/admin/v1/send_server_notice` and `PUT …/send_server_notice/{txnId}`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Admin;
use crate::{
    api::{ok, ApiResult, AppState, Json, Path},
    services::{requester::Requester, rooms::server_notices::Notice},
    util::parse_user_id,
    Error,
};

#[derive(Deserialize)]
pub struct Body {
    user_id: String,
    content: Value,
    #[serde(rename = "type")]
    kind: Option<String>,
    state_key: Option<String>,
}

/// `r` is a server admin (the `Admin` extractor checked it).
async fn send_notice(s: &AppState, r: &Requester, b: Body, txn: Option<&str>) -> ApiResult {
    let user = parse_user_id(&b.user_id)?;
    let kind = b.kind.as_deref().unwrap_or("m.room.message");
    if kind.is_empty() || kind.len() > 255 {
        return Err(Error::invalid_param("Invalid event type"));
    }
    if txn.is_some_and(|t| t.is_empty() || t.len() > 255) {
        return Err(Error::invalid_param("Invalid transaction id"));
    }
    let event_id = s
        .rooms()
        .send_server_notice(Notice {
            admin: &r.user_id,
            user: &user,
            kind,
            state_key: b.state_key.as_deref(),
            content: b.content,
            txn,
        })
        .await?;
    ok(json!({ "event_id": event_id }))
}

pub async fn send(State(s): State<AppState>, Admin(r): Admin, Json(b): Json<Body>) -> ApiResult {
    send_notice(&s, &r, b, None).await
}

pub async fn send_txn(
    State(s): State<AppState>,
    Admin(r): Admin,
    Path(txn): Path<String>,
    Json(b): Json<Body>,
) -> ApiResult {
    send_notice(&s, &r, b, Some(&txn)).await
}
