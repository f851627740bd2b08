//! Transactions (spec: Server-server API, Transactions): PDUs and EDUs pushed by other servers.

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Path},
    Error,
};

#[derive(Deserialize)]
pub struct Transaction {
    origin: String,
    #[serde(default)]
    pdus: Vec<Value>,
    #[serde(default)]
    edus: Vec<Value>,
}

pub async fn send(
    State(s): State<AppState>,
    Path(txn): Path<String>,
    req: FedRequest,
) -> ApiResult {
    let t: Transaction = req.transaction()?;
    if t.origin != req.origin.as_str() {
        return Err(Error::forbidden("origin does not match the signing server"));
    }
    if t.pdus.len() > 50 || t.edus.len() > 100 {
        return Err(Error::bad_json(
            "At most 50 PDUs and 100 EDUs per transaction",
        ));
    }
    ok(s.federation()
        .receive_transaction(&req.origin, &txn, t.pdus, t.edus)
        .await?)
}
