//! Profiles (spec: Profiles), with the extended fields of v1.16 (MSC4133). Display name and
//! avatar changes propagate to the user's member events in the background.

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::accounts::profile_fields::Change,
    Error,
};

pub async fn get_all(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.accounts().profile(&r.user_id, &user).await?)
}

pub async fn get_field(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult {
    let p = s.accounts().profile(&r.user_id, &user).await?;
    match p.get(&name) {
        Some(v) => ok(json!({ name: v })),
        None => Err(Error::not_found("Profile field not set")),
    }
}

async fn change(s: AppState, r: Auth, user: String, name: String, c: Change) -> ApiResult {
    let target = crate::util::parse_user_id(&user)?;
    let member_keys = s
        .accounts()
        .change_profile_key(&r.0.user_id, &target, &name, c)
        .await?;
    if member_keys {
        let svc = s.clone();
        tokio::spawn(async move { svc.rooms().propagate_profile(&target).await });
    }
    ok(json!({}))
}

/// `PUT /profile/{userId}/{keyName}`: the body holds the key (`null` clears displayname and
/// avatar_url, as before v1.16).
pub async fn set_field(
    State(s): State<AppState>,
    r: Auth,
    Path((user, name)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    let value = match b.get(&name) {
        Some(v) => v.clone(),
        None if matches!(name.as_str(), "displayname" | "avatar_url") => Value::Null,
        None => {
            return Err(Error::missing_param(format!(
                "The body must hold the field {name}"
            )))
        }
    };
    change(s, r, user, name, Change::Set(value)).await
}

/// `DELETE /profile/{userId}/{keyName}` (v1.16).
pub async fn delete_field(
    State(s): State<AppState>,
    r: Auth,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult {
    change(s, r, user, name, Change::Delete).await
}
