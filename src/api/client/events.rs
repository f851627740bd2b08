//! Sending and reading events (spec: Events, Room state, Redactions, Pagination, Context).

use axum::extract::State;
use ruma::OwnedEventId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path, Query},
    services::filter::RoomEventFilter,
    store::events::Dir,
    util::parse_room_id as room,
    Error,
};

pub async fn send(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, kind, txn)): Path<(String, String, String)>,
    Json(content): Json<Value>,
) -> ApiResult {
    let event_id = s
        .rooms()
        .send_event(&r, &room(&id)?, &kind, None, content, Some(&txn))
        .await?;
    ok(json!({ "event_id": event_id }))
}

pub async fn put_state(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, kind)): Path<(String, String)>,
    Json(content): Json<Value>,
) -> ApiResult {
    let event_id = s
        .rooms()
        .send_event(&r, &room(&id)?, &kind, Some(""), content, None)
        .await?;
    ok(json!({ "event_id": event_id }))
}

pub async fn put_state_key(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, kind, key)): Path<(String, String, String)>,
    Json(content): Json<Value>,
) -> ApiResult {
    let event_id = s
        .rooms()
        .send_event(&r, &room(&id)?, &kind, Some(&key), content, None)
        .await?;
    ok(json!({ "event_id": event_id }))
}

pub async fn all_state(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    ok(Value::Array(
        s.rooms().room_state(&r.user_id, &room(&id)?).await?,
    ))
}

/// `?format=` of a state read (spec v1.16): `content` (the default) or `event`.
#[derive(Deserialize, Default)]
pub struct StateFormat {
    format: Option<String>,
}

impl StateFormat {
    fn whole(&self) -> Result<bool, Error> {
        match self.format.as_deref() {
            None | Some("content") => Ok(false),
            Some("event") => Ok(true),
            Some(_) => Err(Error::invalid_param("format must be content or event")),
        }
    }
}

pub async fn get_state(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, kind)): Path<(String, String)>,
    Query(f): Query<StateFormat>,
) -> ApiResult {
    ok(s.rooms()
        .room_state_event(&r.user_id, &room(&id)?, &kind, "", f.whole()?)
        .await?)
}

pub async fn get_state_key(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, kind, key)): Path<(String, String, String)>,
    Query(f): Query<StateFormat>,
) -> ApiResult {
    ok(s.rooms()
        .room_state_event(&r.user_id, &room(&id)?, &kind, &key, f.whole()?)
        .await?)
}

#[derive(Deserialize, Default)]
pub struct RedactBody {
    reason: Option<String>,
}

pub async fn redact(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, event_id, txn)): Path<(String, String, String)>,
    Json(b): Json<RedactBody>,
) -> ApiResult {
    let target =
        OwnedEventId::try_from(event_id).map_err(|_| Error::invalid_param("Invalid event id"))?;
    let event_id = s
        .rooms()
        .redact(&r, &room(&id)?, &target, b.reason.as_deref(), Some(&txn))
        .await?;
    ok(json!({ "event_id": event_id }))
}

pub async fn get_event(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, event_id)): Path<(String, String)>,
) -> ApiResult {
    ok(s.rooms()
        .get_room_event(&r.user_id, &r.device_id, &room(&id)?, &event_id)
        .await?)
}

#[derive(Deserialize)]
pub struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<i64>,
    filter: Option<String>,
}

fn parse_filter(f: Option<&str>) -> Result<RoomEventFilter, Error> {
    match f {
        None => Ok(RoomEventFilter::default()),
        Some(f) => {
            serde_json::from_str(f).map_err(|e| Error::bad_json(format!("Invalid filter: {e}")))
        }
    }
}

pub async fn messages(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult {
    let dir = match q.dir.as_deref() {
        Some("b") | None => Dir::Backward,
        Some("f") => Dir::Forward,
        Some(_) => return Err(Error::invalid_param("dir must be b or f")),
    };
    let filter = parse_filter(q.filter.as_deref())?;
    let limit = q.limit.or(filter.limit).unwrap_or(10);
    let out = s
        .rooms()
        .messages(
            &r.user_id,
            &r.device_id,
            &room(&id)?,
            q.from.as_deref(),
            q.to.as_deref(),
            dir,
            limit,
            &filter,
        )
        .await?;
    ok(out)
}

#[derive(Deserialize)]
pub struct ContextQuery {
    limit: Option<i64>,
    filter: Option<String>,
}

pub async fn context(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((id, event_id)): Path<(String, String)>,
    Query(q): Query<ContextQuery>,
) -> ApiResult {
    let filter = parse_filter(q.filter.as_deref())?;
    ok(s.rooms()
        .context(
            &r.user_id,
            &r.device_id,
            &room(&id)?,
            &event_id,
            q.limit.unwrap_or(10),
            &filter,
        )
        .await?)
}
