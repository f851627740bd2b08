//! Room summaries (spec v1.15 `GET /room_summary/{roomIdOrAlias}`, MSC3266) and jumping to a
//! date (`GET /rooms/{roomId}/timestamp_to_event`, spec v1.6).

use axum::extract::State;
use serde::Deserialize;

use crate::{
    api::{ok, ApiResult, AppState, Auth, MaybeAuth, Path, Query},
    util::parse_room_id,
    Error,
};

async fn summary(
    s: &AppState,
    who: MaybeAuth,
    id_or_alias: &str,
    query: Option<String>,
    unstable: bool,
) -> ApiResult {
    let user = who.0.as_ref().map(|r| &*r.user_id);
    let via = super::room_membership::via(&query);
    ok(s.rooms()
        .room_summary_of(user, id_or_alias, via, unstable)
        .await?)
}

pub async fn room_summary(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ApiResult {
    summary(&s, who, &id, q, false).await
}

/// The unstable path (`im.nheko.summary`), which some clients still call.
pub async fn room_summary_unstable(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ApiResult {
    summary(&s, who, &id, q, true).await
}

#[derive(Deserialize)]
pub struct TimestampQuery {
    ts: i64,
    dir: String,
}

pub async fn timestamp_to_event(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Query(q): Query<TimestampQuery>,
) -> ApiResult {
    let forward = match q.dir.as_str() {
        "f" => true,
        "b" => false,
        _ => return Err(Error::invalid_param("dir must be f or b")),
    };
    ok(s.rooms()
        .timestamp_to_event(&r.user_id, &parse_room_id(&id)?, q.ts, forward)
        .await?)
}
