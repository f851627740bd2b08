//! Relationships and threads (spec: Relationships, Threading): /relations and /threads.

use axum::extract::State;
use serde::Deserialize;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Path, Query},
    services::rooms::relations::RelationsRequest,
    util::parse_room_id as room,
    Error,
};

#[derive(Deserialize)]
pub struct RelationsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    dir: Option<String>,
    recurse: Option<bool>,
}

async fn relations(
    s: AppState,
    r: crate::services::requester::Requester,
    room_id: String,
    parent: String,
    rel_type: Option<String>,
    event_type: Option<String>,
    q: RelationsQuery,
) -> ApiResult {
    let backward = match q.dir.as_deref() {
        None | Some("b") => true,
        Some("f") => false,
        Some(_) => return Err(Error::invalid_param("dir must be b or f")),
    };
    ok(s.rooms()
        .relations(
            &r.user_id,
            &r.device_id,
            &room(&room_id)?,
            RelationsRequest {
                parent: &parent,
                rel_type: rel_type.as_deref(),
                event_type: event_type.as_deref(),
                from: q.from.as_deref(),
                to: q.to.as_deref(),
                backward,
                limit: q.limit.unwrap_or(50),
                recurse: q.recurse.unwrap_or(false),
            },
        )
        .await?)
}

pub async fn all(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room_id, parent)): Path<(String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult {
    relations(s, r, room_id, parent, None, None, q).await
}

pub async fn by_type(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room_id, parent, rel_type)): Path<(String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult {
    relations(s, r, room_id, parent, Some(rel_type), None, q).await
}

pub async fn by_type_and_event_type(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room_id, parent, rel_type, event_type)): Path<(String, String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult {
    relations(s, r, room_id, parent, Some(rel_type), Some(event_type), q).await
}

#[derive(Deserialize)]
pub struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<i64>,
}

pub async fn threads(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room_id): Path<String>,
    Query(q): Query<ThreadsQuery>,
) -> ApiResult {
    let participated = match q.include.as_deref() {
        None | Some("all") => false,
        Some("participated") => true,
        Some(_) => return Err(Error::invalid_param("include must be all or participated")),
    };
    ok(s.rooms()
        .threads(
            &r.user_id,
            &r.device_id,
            &room(&room_id)?,
            participated,
            q.from.as_deref(),
            q.limit.unwrap_or(50),
        )
        .await?)
}
