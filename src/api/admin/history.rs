//! Purging a room's history and redacting a user's events (Synapse's `purge_history` and
//! `user/{user_id}/redact`), both background jobs with their status.

use axum::{
    extract::State,
    routing::{get, post},
    Router,
};

use super::{audit, Admin};
use crate::{
    api::{json_body, ok, ApiResult, AppState, Nul, Path},
    services::admin::{PurgeHistory, RedactUser},
    util::{parse_room_id, parse_user_id},
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/_synapse/admin/v1/purge_history/{room_id}",
        post(purge_history),
    )
    .route(
        "/_synapse/admin/v1/purge_history/{room_id}/{event_id}",
        post(purge_history_to_event),
    )
    .route(
        "/_synapse/admin/v1/purge_history_status/{purge_id}",
        get(purge_history_status),
    )
    .route(
        "/_synapse/admin/v1/user/{user_id}/redact",
        post(redact_user),
    )
    .route(
        "/_synapse/admin/v1/user/redact_status/{redact_id}",
        get(redact_status),
    )
}

async fn purge(
    s: AppState,
    a: Admin,
    room: String,
    event: Option<String>,
    body: &[u8],
) -> ApiResult {
    let Admin(a) = a;
    let room = parse_room_id(&room)?;
    let req: PurgeHistory = json_body(body, Nul::Refused)?;
    let v = s
        .admin()
        .purge_history(&room, event.as_deref(), req)
        .await?;
    audit(&a, "purge_history", room.as_str());
    ok(v)
}

async fn purge_history(
    State(s): State<AppState>,
    admin: Admin,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    purge(s, admin, room, None, &body).await
}

async fn purge_history_to_event(
    State(s): State<AppState>,
    admin: Admin,
    Path((room, event)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    purge(s, admin, room, Some(event), &body).await
}

async fn purge_history_status(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.admin().purge_history_status(&id).await?)
}

async fn redact_user(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let req: RedactUser = json_body(&body, Nul::Refused)?;
    let v = s.admin().redact_user(&a.user_id, &user, req).await?;
    audit(&a, "redact_user_events", user.as_str());
    ok(v)
}

async fn redact_status(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.admin().redact_user_status(&id).await?)
}
