//! Room summaries (spec v1.15 `GET /room_summary/{roomIdOrAlias}`, MSC3266) and jumping to a
//! date (`GET /rooms/{roomId}/timestamp_to_event`, spec v1.6).

use axum::extract::State;
use ruma::{RoomAliasId, RoomId};
use serde::Deserialize;

use crate::{
    api::{ok, ApiResult, AppState, Auth, MaybeAuth, Path, Query},
    util::parse_room_id,
    Error,
};

/// `via` (servers to peek through) is not read: remote rooms are not summarised over federation
/// yet (a room unknown here is 404).
async fn summary(s: &AppState, who: MaybeAuth, id_or_alias: &str, unstable: bool) -> ApiResult {
    let room = if id_or_alias.starts_with('#') {
        let alias = RoomAliasId::parse(id_or_alias)
            .map_err(|_| Error::invalid_param("Invalid room alias"))?;
        s.federation().lookup_alias(&alias).await?.0
    } else {
        RoomId::parse(id_or_alias).map_err(|_| Error::invalid_param("Invalid room id or alias"))?
    };
    let user = who.0.as_ref().map(|r| &*r.user_id);
    ok(s.rooms().room_summary(user, &room, unstable).await?)
}

pub async fn room_summary(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult {
    summary(&s, who, &id, false).await
}

/// The unstable path (`im.nheko.summary`), which some clients still call.
pub async fn room_summary_unstable(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult {
    summary(&s, who, &id, true).await
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
