//! The rest of Synapse's user admin API: shadow ban, rate-limit override, login as a user,
//! invite and join counts, device creation, and shared-secret registration (`/v1/register`,
//! which authenticates by its HMAC, not by an admin token).

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use serde::Deserialize;
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Json, Path},
    services::admin::{RateLimitOverride, SharedSecretRegistration},
    util::parse_user_id,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/_synapse/admin/v1/users/{user_id}/shadow_ban",
        post(shadow_ban).delete(unshadow_ban),
    )
    .route(
        "/_synapse/admin/v1/users/{user_id}/override_ratelimit",
        get(get_override).post(set_override).delete(delete_override),
    )
    .route("/_synapse/admin/v1/users/{user_id}/login", post(login_as))
    .route(
        "/_synapse/admin/v1/users/{user_id}/sent_invite_count",
        get(sent_invite_count),
    )
    .route(
        "/_synapse/admin/v1/users/{user_id}/cumulative_joined_room_count",
        get(cumulative_joined),
    )
    .route(
        "/_synapse/admin/v2/users/{user_id}/devices",
        post(create_device),
    )
    .route("/_synapse/admin/v1/register", get(nonce).post(register))
    .route(
        "/_synapse/admin/v1/auth_providers/{provider}/users/{external_id}",
        get(auth_provider_user),
    )
    .route(
        "/_synapse/admin/v1/experimental_features/{user_id}",
        get(experimental_features).put(set_experimental_features),
    )
}

async fn shadow_ban(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().set_shadow_banned(&user, true).await?;
    audit(&a, "shadow_ban", user.as_str());
    ok(json!({}))
}

async fn unshadow_ban(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().set_shadow_banned(&user, false).await?;
    audit(&a, "unshadow_ban", user.as_str());
    ok(json!({}))
}

async fn get_override(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().ratelimit_override(&parse_user_id(&user)?).await?)
}

async fn set_override(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<RateLimitOverride>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let v = s.admin().set_ratelimit_override(&user, Some(b)).await?;
    audit(&a, "override_ratelimit", user.as_str());
    ok(v)
}

async fn delete_override(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let v = s.admin().set_ratelimit_override(&user, None).await?;
    audit(&a, "delete_ratelimit_override", user.as_str());
    ok(v)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginBody {
    valid_until_ms: Option<i64>,
}

async fn login_as(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<LoginBody>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let v = s
        .admin()
        .login_as(&a.user_id, &user, b.valid_until_ms)
        .await?;
    audit(&a, "login_as_user", user.as_str());
    ok(v)
}

async fn sent_invite_count(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let from = Params::parse(q.as_deref()).int("from_ts")?;
    ok(s.admin()
        .sent_invite_count(&parse_user_id(&user)?, from)
        .await?)
}

async fn cumulative_joined(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin()
        .cumulative_joined_room_count(&parse_user_id(&user)?)
        .await?)
}

#[derive(Deserialize)]
struct CreateDevice {
    device_id: String,
}

async fn create_device(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<CreateDevice>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().create_device(&user, &b.device_id).await?;
    audit(&a, "create_device", &format!("{user} {}", b.device_id));
    Ok((StatusCode::CREATED, axum::Json(json!({}))).into_response())
}

async fn nonce(State(s): State<AppState>) -> ApiResult {
    ok(s.admin().registration_nonce().await?)
}

async fn register(State(s): State<AppState>, Json(b): Json<SharedSecretRegistration>) -> ApiResult {
    let username = b.username.clone();
    let v = s.admin().register_with_secret(b).await?;
    tracing::info!(target: "palabre::admin", user = %username, admin = "shared secret", action = "register", "admin action");
    ok(v)
}

async fn experimental_features(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin()
        .experimental_features(&parse_user_id(&user)?)
        .await?)
}

async fn set_experimental_features(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<serde_json::Value>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().set_experimental_features(&user, &b).await?;
    audit(&a, "set_experimental_features", user.as_str());
    ok(json!({}))
}

/// `GET /v1/auth_providers/{provider}/users/{external_id}`: the local user an external
/// identity (SSO) maps to. This server has no external identity providers yet (password
/// accounts only; OpenID Connect is issue 20), so no external id maps to anyone: 404, as
/// Synapse answers for an id it does not know.
async fn auth_provider_user(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path((provider, external_id)): Path<(String, String)>,
) -> ApiResult {
    s.admin()
        .user_by_external_id(&provider, &external_id)
        .await
        .and_then(ok)
}
