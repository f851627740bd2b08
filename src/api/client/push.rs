//! Push notifications (spec: Push notifications): push rules, pushers and /notifications.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path, Query},
    services::push::{pusher::SetPusher, ruleset_json, RuleBody},
    Error,
};

pub async fn get_all(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(json!({ "global": ruleset_json(&*s.push().ruleset(&r.user_id).await?)? }))
}

pub async fn get_global(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(ruleset_json(&*s.push().ruleset(&r.user_id).await?)?)
}

fn global(scope: &str) -> Result<(), Error> {
    if scope == "global" {
        Ok(())
    } else {
        Err(Error::invalid_param("Only the 'global' scope exists"))
    }
}

pub async fn get_rule(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult {
    global(&scope)?;
    ok(s.push().push_rule(&r.user_id, &kind, &rule_id).await?)
}

#[derive(Deserialize)]
pub struct Position {
    before: Option<String>,
    after: Option<String>,
}

pub async fn put_rule(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    Query(q): Query<Position>,
    Json(body): Json<RuleBody>,
) -> ApiResult {
    global(&scope)?;
    s.push()
        .put_push_rule(
            &r.user_id,
            &kind,
            &rule_id,
            body,
            q.before.as_deref(),
            q.after.as_deref(),
        )
        .await?;
    ok(json!({}))
}

pub async fn delete_rule(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult {
    global(&scope)?;
    s.push()
        .delete_push_rule(&r.user_id, &kind, &rule_id)
        .await?;
    ok(json!({}))
}

pub async fn get_enabled(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult {
    global(&scope)?;
    let rule = s.push().push_rule(&r.user_id, &kind, &rule_id).await?;
    ok(json!({ "enabled": rule["enabled"] }))
}

#[derive(Deserialize)]
pub struct Enabled {
    enabled: bool,
}

pub async fn put_enabled(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    Json(b): Json<Enabled>,
) -> ApiResult {
    global(&scope)?;
    s.push()
        .set_push_rule_enabled(&r.user_id, &kind, &rule_id, b.enabled)
        .await?;
    ok(json!({}))
}

pub async fn get_actions(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
) -> ApiResult {
    global(&scope)?;
    let rule = s.push().push_rule(&r.user_id, &kind, &rule_id).await?;
    ok(json!({ "actions": rule["actions"] }))
}

#[derive(Deserialize)]
pub struct Actions {
    actions: Vec<ruma::push::Action>,
}

pub async fn put_actions(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((scope, kind, rule_id)): Path<(String, String, String)>,
    Json(b): Json<Actions>,
) -> ApiResult {
    global(&scope)?;
    s.push()
        .set_push_rule_actions(&r.user_id, &kind, &rule_id, b.actions)
        .await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct NotificationsQuery {
    from: Option<String>,
    limit: Option<i64>,
    only: Option<String>,
}

pub async fn notifications(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<NotificationsQuery>,
) -> ApiResult {
    let only_highlight = q.only.as_deref() == Some("highlight");
    ok(s.push()
        .notifications(
            &r.user_id,
            q.from.as_deref(),
            q.limit.unwrap_or(50),
            only_highlight,
        )
        .await?)
}

pub async fn pushers(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.push().pushers(&r.user_id).await?)
}

pub async fn set_pusher(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<SetPusher>,
) -> ApiResult {
    s.push().set_pusher(&r, b).await?;
    ok(json!({}))
}
