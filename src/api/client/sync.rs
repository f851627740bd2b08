//! `/sync` and filters (spec: Syncing, Filtering).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path, Query},
    services::sync::SyncRequest,
    Error,
};

#[derive(Deserialize)]
pub struct SyncQuery {
    since: Option<String>,
    timeout: Option<u64>,
    filter: Option<String>,
    #[serde(default)]
    full_state: bool,
    set_presence: Option<String>,
}

pub async fn sync(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<SyncQuery>,
) -> ApiResult {
    let filter = s
        .sync()
        .resolve_filter(&r.user_id, q.filter.as_deref())
        .await?;
    let req = SyncRequest {
        since: q.since,
        timeout_ms: q.timeout.unwrap_or(0),
        full_state: q.full_state,
        filter,
        set_presence: q.set_presence,
    };
    ok(s.sync().sync_v2(&r, req).await?)
}

fn own(r: &crate::services::requester::Requester, user: &str) -> Result<(), Error> {
    r.only_own(user, "Cannot use another user's filters")
}

pub async fn create_filter(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    own(&r, &user)?;
    let id = s.sync().create_filter(&r.user_id, b).await?;
    ok(json!({ "filter_id": id }))
}

pub async fn get_filter(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult {
    own(&r, &user)?;
    ok(serde_json::to_value(
        s.sync().get_filter(&r.user_id, &id).await?,
    )?)
}
