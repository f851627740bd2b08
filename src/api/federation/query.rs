//! Queries (spec: Server-server API, Querying for information): profiles and room aliases.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Query},
    Error,
};

#[derive(Deserialize)]
pub struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

pub async fn profile(
    State(s): State<AppState>,
    Query(q): Query<ProfileQuery>,
    req: FedRequest,
) -> ApiResult {
    let user = crate::util::parse_user_id(&q.user_id)?;
    if !s.is_local(&user) {
        return Err(Error::invalid_param("That user is not on this server"));
    }
    s.policy()
        .policy_may_serve_profile(&req.origin, &user)
        .await?;
    let all = s.accounts().local_profile(user.as_str()).await?;
    match q.field.as_deref() {
        None => ok(all),
        Some(f) => {
            let mut out = json!({});
            if let Some(v) = all.get(f) {
                out[f] = v.clone();
            }
            ok(out)
        }
    }
}

#[derive(Deserialize)]
pub struct DirectoryQuery {
    room_alias: String,
}

pub async fn directory(
    State(s): State<AppState>,
    Query(q): Query<DirectoryQuery>,
    _req: FedRequest,
) -> ApiResult {
    let alias = ruma::RoomAliasId::parse(&q.room_alias)
        .map_err(|_| Error::invalid_param("Invalid room alias"))?;
    if alias.server_name() != s.server_name {
        return Err(Error::not_found("Room alias not found"));
    }
    let room = s.rooms().resolve_alias(&alias).await?;
    ok(json!({ "room_id": room, "servers": [s.server_name.as_str()] }))
}
