//! Server-side search (spec: Server Side Search).

use axum::extract::State;
use serde::Deserialize;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Query},
    services::rooms::search::SearchRequest,
};

#[derive(Deserialize)]
pub struct SearchQuery {
    next_batch: Option<String>,
}

pub async fn search(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<SearchQuery>,
    Json(b): Json<SearchRequest>,
) -> ApiResult {
    ok(s.rooms()
        .search(&r.user_id, &r.device_id, q.next_batch.as_deref(), b)
        .await?)
}
