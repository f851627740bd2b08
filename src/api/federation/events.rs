//! Retrieving events (spec: Server-server API, Retrieving events; Backfilling).

use axum::extract::State;
use serde::Deserialize;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Path, Query},
    util::parse_room_id,
};

pub async fn event(
    State(s): State<AppState>,
    Path(event_id): Path<String>,
    req: FedRequest,
) -> ApiResult {
    ok(s.serve_event(&req.origin, &event_id).await?)
}

#[derive(Deserialize)]
pub struct MissingBody {
    #[serde(default)]
    earliest_events: Vec<String>,
    latest_events: Vec<String>,
    limit: Option<i64>,
}

pub async fn get_missing_events(
    State(s): State<AppState>,
    Path(room): Path<String>,
    req: FedRequest,
) -> ApiResult {
    let b: MissingBody = req.json()?;
    ok(s.serve_missing_events(
        &req.origin,
        &parse_room_id(&room)?,
        &b.earliest_events,
        &b.latest_events,
        b.limit.unwrap_or(10),
    )
    .await?)
}

#[derive(Deserialize)]
pub struct StateQuery {
    event_id: String,
}

pub async fn state_ids(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<StateQuery>,
    req: FedRequest,
) -> ApiResult {
    ok(
        s.serve_state(&req.origin, &parse_room_id(&room)?, &q.event_id, true)
            .await?,
    )
}

pub async fn state(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<StateQuery>,
    req: FedRequest,
) -> ApiResult {
    ok(
        s.serve_state(&req.origin, &parse_room_id(&room)?, &q.event_id, false)
            .await?,
    )
}
