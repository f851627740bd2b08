//! The annuaire change stream between the federation's Palabre servers (TCHAP.md §6): peers
//! only (`policy.is_peer` origins, others 403).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Query},
    Error,
};

#[derive(Deserialize)]
pub struct ChangesQuery {
    since: Option<String>,
    limit: Option<String>,
}

fn int(v: Option<String>, name: &str) -> Result<Option<i64>, Error> {
    v.map(|v| {
        v.parse::<i64>()
            .map_err(|_| Error::invalid_param(format!("{name} must be an integer")))
    })
    .transpose()
}

/// `GET /_matrix/federation/unstable/fr.gouv.tchap/annuaire/changes?since=&limit=`.
pub async fn changes(
    State(s): State<AppState>,
    Query(q): Query<ChangesQuery>,
    req: FedRequest,
) -> ApiResult {
    let since = int(q.since, "since")?.unwrap_or(0);
    let limit = int(q.limit, "limit")?;
    ok(s.policy()
        .annuaire_changes(&req.origin, since, limit)
        .await?)
}

#[derive(Deserialize)]
struct NotifyBody {
    #[allow(dead_code)]
    position: i64,
}

/// `PUT /_matrix/federation/unstable/fr.gouv.tchap/annuaire/notify` `{position}`.
pub async fn notify(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let _: NotifyBody = req.json()?;
    s.policy().annuaire_notified(&req.origin)?;
    ok(json!({}))
}
