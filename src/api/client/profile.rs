//! Profiles (spec: Profiles). Changes propagate to the user's member events in the background.

use axum::extract::State;
use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    store::users::ProfileField,
    Error,
};

fn field(name: &str) -> Result<ProfileField, Error> {
    match name {
        "displayname" => Ok(ProfileField::Displayname),
        "avatar_url" => Ok(ProfileField::AvatarUrl),
        _ => Err(Error::unrecognized("Unknown profile field")),
    }
}

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
    field(&name)?;
    let p = s.accounts().profile(&r.user_id, &user).await?;
    match p.get(&name) {
        Some(v) => ok(json!({ name: v })),
        None => Err(Error::not_found("Profile field not set")),
    }
}

pub async fn set_field(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((user, name)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> ApiResult {
    let f = field(&name)?;
    let target = crate::util::parse_user_id(&user)?;
    if target != r.user_id && !s.accounts().is_admin(&r.user_id).await? {
        return Err(Error::forbidden("Cannot set another user's profile"));
    }
    let value = match b.get(&name) {
        Some(Value::String(v)) => Some(v.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err(Error::bad_json(format!("{name} must be a string"))),
    };
    s.sync().set_profile(&target, f, value.as_deref()).await?;
    let svc = s.clone();
    tokio::spawn(async move { svc.rooms().propagate_profile(&target).await });
    ok(json!({}))
}
