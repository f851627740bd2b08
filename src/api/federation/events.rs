//! Retrieving events (spec: Server-server API, Retrieving events; Backfilling; Room state;
//! Spaces), served to other servers.

use axum::extract::{RawQuery, State};
use serde::Deserialize;

use super::auth::FedRequest;
use crate::{
    api::{form_pairs, ok, ApiResult, AppState, Path, Query},
    util::parse_room_id,
    Error,
};

pub async fn event(
    State(s): State<AppState>,
    Path(event_id): Path<String>,
    req: FedRequest,
) -> ApiResult {
    ok(s.federation().serve_event(&req.origin, &event_id).await?)
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
    ok(s.federation()
        .serve_missing_events(
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
    ok(s.federation()
        .serve_state(&req.origin, &parse_room_id(&room)?, &q.event_id, true)
        .await?)
}

pub async fn state(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<StateQuery>,
    req: FedRequest,
) -> ApiResult {
    ok(s.federation()
        .serve_state(&req.origin, &parse_room_id(&room)?, &q.event_id, false)
        .await?)
}

pub async fn event_auth(
    State(s): State<AppState>,
    Path((room, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> ApiResult {
    ok(s.federation()
        .serve_event_auth(&req.origin, &parse_room_id(&room)?, &event_id)
        .await?)
}

pub async fn backfill(
    State(s): State<AppState>,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    req: FedRequest,
) -> ApiResult {
    let pairs = q.as_deref().map(form_pairs).unwrap_or_default();
    let from: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "v")
        .map(|(_, v)| v.clone())
        .collect();
    let limit = match pairs.iter().find(|(k, _)| k == "limit") {
        Some((_, l)) => l
            .parse::<i64>()
            .map_err(|_| Error::invalid_param("limit must be an integer"))?,
        None => return Err(Error::invalid_param("limit is required")),
    };
    ok(s.federation()
        .serve_backfill(&req.origin, &parse_room_id(&room)?, &from, limit)
        .await?)
}

#[derive(Deserialize)]
pub struct TimestampQuery {
    ts: i64,
    dir: String,
}

pub async fn timestamp_to_event(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<TimestampQuery>,
    req: FedRequest,
) -> ApiResult {
    let forward = match q.dir.as_str() {
        "f" => true,
        "b" => false,
        _ => return Err(Error::invalid_param("dir must be f or b")),
    };
    ok(s.federation()
        .serve_timestamp_to_event(&req.origin, &parse_room_id(&room)?, q.ts, forward)
        .await?)
}

#[derive(Deserialize)]
pub struct HierarchyQuery {
    #[serde(default)]
    suggested_only: bool,
}

pub async fn hierarchy(
    State(s): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<HierarchyQuery>,
    req: FedRequest,
) -> ApiResult {
    ok(s.rooms()
        .server_hierarchy(&req.origin, &parse_room_id(&room)?, q.suggested_only)
        .await?)
}
