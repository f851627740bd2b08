//! OpenID (spec: OpenID): tokens a user hands to third parties to prove who they are.

use axum::extract::State;
use serde_json::Value;

use crate::api::{ok, ApiResult, AppState, Auth, Json, Path};

pub async fn request_token(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    Json(_): Json<Value>,
) -> ApiResult {
    r.only_own(&user, "Cannot request an OpenID token for another user")?;
    ok(s.accounts().request_openid_token(&r.user_id).await?)
}
