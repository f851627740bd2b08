//! Server-side key backups (spec: End-to-End Encryption — server-side key backups).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path, Query},
    services::e2ee::backup::KeysScope,
};

pub async fn create_version(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<Value>,
) -> ApiResult {
    ok(s.e2ee().create_backup(&r.user_id, &b).await?)
}

pub async fn current_version(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.e2ee().get_backup(&r.user_id, None).await?)
}

pub async fn get_version(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(v): Path<String>,
) -> ApiResult {
    ok(s.e2ee().get_backup(&r.user_id, Some(&v)).await?)
}

pub async fn update_version(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(v): Path<String>,
    Json(b): Json<Value>,
) -> ApiResult {
    s.e2ee().update_backup(&r.user_id, &v, &b).await?;
    ok(json!({}))
}

pub async fn delete_version(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(v): Path<String>,
) -> ApiResult {
    s.e2ee().delete_backup(&r.user_id, &v).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: String,
}

pub async fn put_all(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<VersionQuery>,
    Json(b): Json<Value>,
) -> ApiResult {
    ok(s.e2ee()
        .put_backup_keys(&r.user_id, &q.version, KeysScope::All, &b)
        .await?)
}

pub async fn put_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
    Json(b): Json<Value>,
) -> ApiResult {
    ok(s.e2ee()
        .put_backup_keys(&r.user_id, &q.version, KeysScope::Room(&room), &b)
        .await?)
}

pub async fn put_session(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    Json(b): Json<Value>,
) -> ApiResult {
    ok(s.e2ee()
        .put_backup_keys(
            &r.user_id,
            &q.version,
            KeysScope::Session(&room, &session),
            &b,
        )
        .await?)
}

pub async fn get_all(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .get_backup_keys(&r.user_id, &q.version, KeysScope::All)
        .await?)
}

pub async fn get_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .get_backup_keys(&r.user_id, &q.version, KeysScope::Room(&room))
        .await?)
}

pub async fn get_session(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .get_backup_keys(&r.user_id, &q.version, KeysScope::Session(&room, &session))
        .await?)
}

pub async fn delete_all(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .delete_backup_keys(&r.user_id, &q.version, KeysScope::All)
        .await?)
}

pub async fn delete_room(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(room): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .delete_backup_keys(&r.user_id, &q.version, KeysScope::Room(&room))
        .await?)
}

pub async fn delete_session(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((room, session)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult {
    ok(s.e2ee()
        .delete_backup_keys(&r.user_id, &q.version, KeysScope::Session(&room, &session))
        .await?)
}
