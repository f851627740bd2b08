//! Rooms read and repaired as the server (Synapse's `rooms.py` and `room_membership`):
//! messages, context, timestamp_to_event, hierarchy, fetch_event, join, make_room_admin and
//! the deletion of forward extremities.

use axum::{
    extract::{RawQuery, State},
    routing::{delete, get, post},
    Router,
};
use serde::Deserialize;
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{json_body, ok, ApiResult, AppState, Json, Nul, Path},
    services::{admin::AdminMessages, filter::RoomEventFilter, rooms::spaces::HierarchyRequest},
    store::events::Dir,
    util::{parse_room_id, parse_user_id},
    Error,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_synapse/admin/v1/rooms/{room_id}/messages", get(messages))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/context/{event_id}",
            get(context),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/timestamp_to_event",
            get(timestamp_to_event),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/hierarchy",
            get(hierarchy),
        )
        .route(
            "/_synapse/admin/v1/fetch_event/{event_id}",
            get(fetch_event),
        )
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/forward_extremities",
            delete(delete_extremities),
        )
        .route("/_synapse/admin/v1/join/{room}", post(join))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/make_room_admin",
            post(make_room_admin),
        )
}

/// The `filter` query parameter: a JSON room event filter.
fn filter(p: &Params) -> Result<RoomEventFilter, Error> {
    match p.str("filter") {
        None => Ok(RoomEventFilter::default()),
        Some(f) => serde_json::from_str(&f)
            .map_err(|e| Error::invalid_param(format!("Invalid filter: {e}"))),
    }
}

async fn messages(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let p = Params::parse(q.as_deref());
    let dir = match p.str("dir").as_deref() {
        None | Some("f") => Dir::Forward,
        Some("b") => Dir::Backward,
        Some(_) => return Err(Error::invalid_param("dir must be b or f")),
    };
    let filter = filter(&p)?;
    // As Synapse's pagination config: an empty `from` or `to`, and `from=END`, are absent.
    let from = p.str("from").filter(|f| !f.is_empty() && f != "END");
    let to = p.str("to").filter(|t| !t.is_empty());
    let q = AdminMessages {
        from: from.as_deref(),
        to: to.as_deref(),
        dir,
        limit: p.int("limit")?.or(filter.limit).unwrap_or(10),
        filter: &filter,
    };
    ok(s.admin().admin_room_messages(&room, q).await?)
}

async fn context(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path((room, event_id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let p = Params::parse(q.as_deref());
    let filter = filter(&p)?;
    let limit = p.int("limit")?.unwrap_or(10);
    ok(s.admin()
        .admin_room_context(&room, &event_id, limit, &filter)
        .await?)
}

async fn timestamp_to_event(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let p = Params::parse(q.as_deref());
    let ts = p
        .int("ts")?
        .ok_or_else(|| Error::missing_param("Missing integer query parameter 'ts'"))?;
    let backwards = crate::services::admin::backwards(p.str("dir").as_deref())?;
    ok(s.admin()
        .admin_timestamp_to_event(&room, ts, backwards)
        .await?)
}

async fn hierarchy(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let p = Params::parse(q.as_deref());
    let req = HierarchyRequest {
        suggested_only: p.bool("suggested_only")?.unwrap_or(false),
        max_depth: p.int("max_depth")?,
        limit: p.int("limit")?,
        from: p.str("from"),
    };
    ok(s.admin()
        .admin_room_hierarchy(&a.user_id, &room, req)
        .await?)
}

async fn fetch_event(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(event_id): Path<String>,
) -> ApiResult {
    ok(s.admin().admin_fetch_event(&event_id).await?)
}

#[derive(Deserialize)]
struct JoinBody {
    user_id: String,
}

async fn join(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    Json(b): Json<JoinBody>,
) -> ApiResult {
    let user = parse_user_id(&b.user_id)?;
    let room_id = s.admin().admin_join(&a, &room, &user).await?;
    audit(&a, "join_user", &format!("{room_id} {user}"));
    ok(json!({ "room_id": room_id }))
}

#[derive(Deserialize, Default)]
struct MakeAdminBody {
    user_id: Option<String>,
}

async fn make_room_admin(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: MakeAdminBody = if body.is_empty() {
        MakeAdminBody::default()
    } else {
        json_body(&body, Nul::Refused)?
    };
    let user = match b.user_id {
        Some(u) => parse_user_id(&u)?,
        None => a.user_id.clone(),
    };
    let room_id = s.admin().make_room_admin(&room, &user).await?;
    audit(&a, "make_room_admin", &format!("{room_id} {user}"));
    ok(json!({}))
}

async fn delete_extremities(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(room): Path<String>,
) -> ApiResult {
    let room = parse_room_id(&room)?;
    let v = s.admin().delete_forward_extremities(&room).await?;
    audit(&a, "delete_forward_extremities", room.as_str());
    ok(v)
}
