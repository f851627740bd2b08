//! Login, registration, logout, refresh (spec: Client authentication, Account registration).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, ClientIp, Json, Query},
    services::requester::AuthData,
    Error,
};

pub async fn login_flows() -> ApiResult {
    ok(json!({ "flows": [{ "type": "m.login.password" }] }))
}

#[derive(Deserialize)]
pub struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    auth: AuthData,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    refresh_token: bool,
}

pub async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<LoginBody>,
) -> ApiResult {
    s.ratelimit
        .check("login", &ip, s.config.rate_limits.login)?;
    if b.kind != "m.login.password" {
        return Err(Error::bad_request("Unsupported login type"));
    }
    let session = s
        .accounts()
        .login_password(
            &b.auth,
            b.device_id,
            b.initial_device_display_name.as_deref(),
            b.refresh_token,
        )
        .await?;
    ok(session.to_json(s.server_name.as_str()))
}

#[derive(Deserialize)]
pub struct RegisterBody {
    auth: Option<AuthData>,
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    refresh_token: bool,
}

#[derive(Deserialize)]
pub struct RegisterQuery {
    kind: Option<String>,
}

pub async fn register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<RegisterQuery>,
    Json(b): Json<RegisterBody>,
) -> ApiResult {
    if q.kind.as_deref() == Some("guest") {
        return Err(Error::guest_access_forbidden("Guest access is disabled"));
    }
    // Counted before anything else: the availability check (M_USER_IN_USE) and every UIA
    // stage (registration-token guesses) are under the limit.
    s.ratelimit
        .check("register", &ip, s.config.rate_limits.registration)?;
    s.accounts().check_registration_open()?;
    let localpart = s.accounts().requested_localpart(b.username.as_deref());
    if let Some(l) = &localpart {
        s.accounts().username_available(l).await?;
    }
    if let Some(p) = &b.password {
        s.policy().check_password_strength(p)?;
    }
    let auth = s.accounts().registration_auth(b.auth).await?;
    let (user_id, session) = s
        .accounts()
        .register(
            localpart.as_deref(),
            b.password.as_deref(),
            false,
            b.device_id,
            b.initial_device_display_name.as_deref(),
            !b.inhibit_login,
            b.refresh_token,
            &auth,
        )
        .await?;
    match session {
        Some(sess) => ok(sess.to_json(s.server_name.as_str())),
        None => ok(json!({ "user_id": user_id, "home_server": s.server_name })),
    }
}

#[derive(Deserialize)]
pub struct AvailableQuery {
    username: String,
}

pub async fn register_available(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<AvailableQuery>,
) -> ApiResult {
    s.ratelimit
        .check("register", &ip, s.config.rate_limits.registration)?;
    s.accounts().username_available(&q.username).await?;
    ok(json!({ "available": true }))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: String,
}

pub async fn token_validity(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<TokenQuery>,
) -> ApiResult {
    s.ratelimit
        .check("register", &ip, s.config.rate_limits.registration)?;
    let valid = s.accounts().registration_token_valid(&q.token).await?;
    ok(json!({ "valid": valid }))
}

pub async fn logout(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    s.accounts()
        .delete_devices(&r.user_id, std::slice::from_ref(&r.device_id))
        .await?;
    ok(json!({}))
}

pub async fn logout_all(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    s.accounts().logout_all(&r.user_id).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(State(s): State<AppState>, Json(b): Json<RefreshBody>) -> ApiResult {
    let sess = s.accounts().refresh(&b.refresh_token).await?;
    ok(json!({
        "access_token": sess.access_token,
        "refresh_token": sess.refresh_token,
        "expires_in_ms": sess.expires_in_ms,
    }))
}
