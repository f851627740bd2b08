//! The media admin API (Synapse's `media.py` and `statistics.py`): details, a user's or a
//! room's media, quarantine and protection, deletions, the remote-cache purge, statistics.

use axum::{
    extract::{RawQuery, State},
    routing::{get, post},
    Router,
};
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Path},
    services::admin::{DeleteOldMedia, MediaListParams},
    util::{parse_room_id, parse_user_id},
    Error,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/_synapse/admin/v1/media/{server}/{media_id}",
        get(info).delete(delete_one),
    )
    .route(
        "/_synapse/admin/v1/media/quarantine/{server}/{media_id}",
        post(quarantine),
    )
    .route(
        "/_synapse/admin/v1/media/unquarantine/{server}/{media_id}",
        post(unquarantine),
    )
    .route("/_synapse/admin/v1/media/protect/{media_id}", post(protect))
    .route(
        "/_synapse/admin/v1/media/quarantine_changes",
        get(quarantine_changes),
    )
    .route(
        "/_synapse/admin/v1/media/unprotect/{media_id}",
        post(unprotect),
    )
    .route("/_synapse/admin/v1/room/{room_id}/media", get(room_media))
    .route(
        "/_synapse/admin/v1/room/{room_id}/media/quarantine",
        post(quarantine_room),
    )
    .route(
        "/_synapse/admin/v1/quarantine_media/{room_id}",
        post(quarantine_room),
    )
    .route(
        "/_synapse/admin/v1/user/{user_id}/media/quarantine",
        post(quarantine_user),
    )
    .route(
        "/_synapse/admin/v1/users/{user_id}/media",
        get(user_media).delete(delete_user_media),
    )
    .route("/_synapse/admin/v1/media/delete", post(delete_old))
    .route(
        "/_synapse/admin/v1/media/{server}/delete",
        post(delete_old_of),
    )
    .route("/_synapse/admin/v1/purge_media_cache", post(purge_cache))
    .route("/_synapse/admin/v1/statistics/users/media", get(statistics))
    .route(
        "/_synapse/admin/v1/statistics/database/rooms",
        get(room_sizes),
    )
}

fn list_params(q: Option<&str>) -> Result<MediaListParams, Error> {
    let p = Params::parse(q);
    Ok(MediaListParams {
        from: p.int("from")?,
        limit: p.int("limit")?,
        order_by: p.str("order_by"),
        dir: p.str("dir"),
        from_ts: p.int("from_ts")?,
        until_ts: p.int("until_ts")?,
        search_term: p.str("search_term"),
    })
}

/// A required integer query parameter: 400 `M_MISSING_PARAM` without it.
fn required_int(p: &Params, key: &str) -> Result<i64, Error> {
    p.int(key)?
        .ok_or_else(|| Error::missing_param(format!("Missing integer query parameter {key:?}")))
}

async fn info(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult {
    ok(s.admin().media_info(&server, &id).await?)
}

async fn delete_one(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult {
    let v = s.admin().delete_one_media(&server, &id).await?;
    audit(&a, "delete_media", &format!("mxc://{server}/{id}"));
    ok(v)
}

async fn quarantine(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult {
    s.admin()
        .quarantine_media(Some(&a.user_id), &server, &id)
        .await?;
    audit(&a, "quarantine_media", &format!("mxc://{server}/{id}"));
    ok(json!({}))
}

async fn unquarantine(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path((server, id)): Path<(String, String)>,
) -> ApiResult {
    s.admin().quarantine_media(None, &server, &id).await?;
    audit(&a, "unquarantine_media", &format!("mxc://{server}/{id}"));
    ok(json!({}))
}

async fn quarantine_changes(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let from = Params::parse(q.as_deref()).int("from")?;
    ok(s.admin().quarantine_changes(from).await?)
}

async fn protect(State(s): State<AppState>, Admin(a): Admin, Path(id): Path<String>) -> ApiResult {
    s.admin().protect_media(&id, true).await?;
    audit(&a, "protect_media", &id);
    ok(json!({}))
}

async fn unprotect(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    s.admin().protect_media(&id, false).await?;
    audit(&a, "unprotect_media", &id);
    ok(json!({}))
}

async fn room_media(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    let (local, remote) = s.admin().room_media(&parse_room_id(&room)?).await?;
    ok(json!({ "local": local, "remote": remote }))
}

async fn quarantine_room(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let n = s.admin().quarantine_room_media(&a.user_id, &room).await?;
    audit(&a, "quarantine_room_media", room.as_str());
    ok(json!({ "num_quarantined": n }))
}

async fn quarantine_user(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let n = s.admin().quarantine_user_media(&a.user_id, &user).await?;
    audit(&a, "quarantine_user_media", user.as_str());
    ok(json!({ "num_quarantined": n }))
}

async fn user_media(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    ok(s.admin()
        .user_media_page(&user, &list_params(q.as_deref())?)
        .await?)
}

async fn delete_user_media(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let v = s
        .admin()
        .delete_user_media(&user, &list_params(q.as_deref())?)
        .await?;
    audit(&a, "delete_user_media", user.as_str());
    ok(v)
}

fn delete_old_params(q: Option<&str>) -> Result<DeleteOldMedia, Error> {
    let p = Params::parse(q);
    Ok(DeleteOldMedia {
        before_ts: required_int(&p, "before_ts")?,
        size_gt: p.int("size_gt")?.unwrap_or(0),
        keep_profiles: p.bool("keep_profiles")?.unwrap_or(true),
    })
}

async fn delete_old(
    State(s): State<AppState>,
    Admin(a): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let d = delete_old_params(q.as_deref())?;
    let v = s.admin().delete_old_media(None, d).await?;
    audit(
        &a,
        "delete_old_media",
        &format!("before_ts={}", d.before_ts),
    );
    ok(v)
}

async fn delete_old_of(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(server): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let d = delete_old_params(q.as_deref())?;
    let v = s.admin().delete_old_media(Some(&server), d).await?;
    audit(
        &a,
        "delete_old_media",
        &format!("before_ts={}", d.before_ts),
    );
    ok(v)
}

async fn purge_cache(
    State(s): State<AppState>,
    Admin(a): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let before = required_int(&Params::parse(q.as_deref()), "before_ts")?;
    let v = s.admin().purge_remote_media(before).await?;
    audit(&a, "purge_media_cache", &format!("before_ts={before}"));
    ok(v)
}

async fn statistics(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    ok(s.admin()
        .media_statistics(&list_params(q.as_deref())?)
        .await?)
}

async fn room_sizes(State(s): State<AppState>, Admin(_): Admin) -> ApiResult {
    ok(s.admin().room_sizes().await?)
}
