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

/// A room known here is summarised from its state; another is asked of the servers named in
/// `via` (or an alias's servers), over federation.
async fn summary(
    s: &AppState,
    who: MaybeAuth,
    id_or_alias: &str,
    query: Option<&str>,
    unstable: bool,
) -> ApiResult {
    let mut via: Vec<ruma::OwnedServerName> = query
        .map(crate::api::form_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "via")
        .filter_map(|(_, v)| ruma::ServerName::parse(&v).ok())
        .collect();
    let room = if id_or_alias.starts_with('#') {
        let alias = RoomAliasId::parse(id_or_alias)
            .map_err(|_| Error::invalid_param("Invalid room alias"))?;
        let (room, servers) = s.federation().lookup_alias(&alias).await?;
        via.extend(
            servers
                .iter()
                .filter_map(|v| ruma::ServerName::parse(v).ok()),
        );
        room
    } else {
        RoomId::parse(id_or_alias).map_err(|_| Error::invalid_param("Invalid room id or alias"))?
    };
    let user = who.0.as_ref().map(|r| &*r.user_id);
    if let Some(v) = s.rooms().room_summary(user, &room, unstable).await? {
        return ok(v);
    }
    ok(s.rooms()
        .remote_room_summary(user, &room, &via, unstable)
        .await?)
}

pub async fn room_summary(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ApiResult {
    summary(&s, who, &id, q.as_deref(), false).await
}

/// The unstable path (`im.nheko.summary`), which some clients still call.
pub async fn room_summary_unstable(
    State(s): State<AppState>,
    who: MaybeAuth,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ApiResult {
    summary(&s, who, &id, q.as_deref(), true).await
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
