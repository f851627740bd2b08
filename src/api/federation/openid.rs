//! OpenID (spec: Server-server API, OpenID): a third party exchanges a user's OpenID token for
//! the user id. No X-Matrix authentication: the token is the credential.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Query},
    Error,
};

#[derive(Deserialize)]
pub struct UserInfoQuery {
    access_token: Option<String>,
}

pub async fn userinfo(State(s): State<AppState>, Query(q): Query<UserInfoQuery>) -> ApiResult {
    let token = q
        .access_token
        .ok_or_else(|| Error::missing_token("Missing access_token"))?;
    ok(json!({ "sub": s.accounts().openid_userinfo(&token).await? }))
}
