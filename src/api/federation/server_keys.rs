//! Server keys (spec: Server-server API, Retrieving server keys).

use axum::extract::State;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState},
    util,
};

pub async fn server_keys(State(s): State<AppState>) -> ApiResult {
    ok(s.keys.server_key_response(
        s.server_name.as_str(),
        util::now_ms(),
        s.config.federation.key_validity_secs,
    ))
}

pub async fn version() -> ApiResult {
    ok(json!({ "server": { "name": "Palabre", "version": env!("CARGO_PKG_VERSION") } }))
}

#[derive(serde::Deserialize)]
pub struct NotaryQuery {
    minimum_valid_until_ts: Option<i64>,
}

/// `GET /_matrix/key/v2/query/{serverName}` (notary, unauthenticated as the spec says).
pub async fn query_one(
    State(s): State<AppState>,
    crate::api::Path(server): crate::api::Path<String>,
    crate::api::Query(q): crate::api::Query<NotaryQuery>,
) -> ApiResult {
    ok(s.federation()
        .notary_keys(&[(server, q.minimum_valid_until_ts.unwrap_or(0))])
        .await?)
}

#[derive(serde::Deserialize)]
pub struct NotaryBody {
    server_keys:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, NotaryCriteria>>,
}

#[derive(serde::Deserialize, Default)]
pub struct NotaryCriteria {
    minimum_valid_until_ts: Option<i64>,
}

/// `POST /_matrix/key/v2/query`.
pub async fn query_many(
    State(s): State<AppState>,
    crate::api::Json(b): crate::api::Json<NotaryBody>,
) -> ApiResult {
    let servers: Vec<(String, i64)> = b
        .server_keys
        .into_iter()
        .map(|(name, keys)| {
            let min = keys
                .values()
                .filter_map(|c| c.minimum_valid_until_ts)
                .max()
                .unwrap_or(0);
            (name, min)
        })
        .collect();
    ok(s.federation().notary_keys(&servers).await?)
}
