//! Spaces (spec: Spaces): the room hierarchy below a space.

use axum::extract::State;
use serde::Deserialize;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Path, Query},
    services::rooms::spaces::HierarchyRequest,
    util::parse_room_id,
};

#[derive(Deserialize)]
pub struct HierarchyQuery {
    #[serde(default)]
    suggested_only: bool,
    max_depth: Option<i64>,
    limit: Option<i64>,
    from: Option<String>,
}

pub async fn hierarchy(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<HierarchyQuery>,
) -> ApiResult {
    let req = HierarchyRequest {
        suggested_only: q.suggested_only,
        max_depth: q.max_depth,
        limit: q.limit,
        from: q.from,
    };
    ok(s.rooms()
        .room_hierarchy(&r.user_id, &parse_room_id(&room)?, req)
        .await?)
}
