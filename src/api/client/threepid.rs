//! Email addresses of an account (spec: Adding Account Administrative Contact Information, and
//! the `requestToken` endpoints of registration and password reset), with the pages the
//! validation links open.

use axum::{
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Redirect},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{form_pairs, ok, ApiResult, AppState, Auth, ClientIp, Json, Query},
    services::{
        accounts::threepid::{Purpose, TokenRequest},
        requester::AuthData,
        requester::ThreepidCreds,
    },
    Error,
};

pub async fn request_token_register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<TokenRequest>,
) -> ApiResult {
    ok(s.accounts()
        .request_email_token(Purpose::Registration, b, &ip)
        .await?)
}

pub async fn request_token_add(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<TokenRequest>,
) -> ApiResult {
    ok(s.accounts()
        .request_email_token(Purpose::AddThreepid, b, &ip)
        .await?)
}

pub async fn request_token_password(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<TokenRequest>,
) -> ApiResult {
    ok(s.accounts()
        .request_email_token(Purpose::PasswordReset, b, &ip)
        .await?)
}

#[derive(Deserialize)]
pub struct SubmitBody {
    sid: String,
    client_secret: String,
    token: String,
}

async fn submit_code(s: &AppState, purpose: Purpose, b: SubmitBody) -> ApiResult {
    s.accounts()
        .submit_email_token(purpose, &b.sid, &b.client_secret, &b.token)
        .await?;
    ok(json!({ "success": true }))
}

/// `submit_url` of registration: POST `{sid, client_secret, token}` with the emailed code.
pub async fn submit_code_register(
    State(s): State<AppState>,
    Json(b): Json<SubmitBody>,
) -> ApiResult {
    submit_code(&s, Purpose::Registration, b).await
}

pub async fn submit_code_add(State(s): State<AppState>, Json(b): Json<SubmitBody>) -> ApiResult {
    submit_code(&s, Purpose::AddThreepid, b).await
}

pub async fn submit_code_password(
    State(s): State<AppState>,
    Json(b): Json<SubmitBody>,
) -> ApiResult {
    submit_code(&s, Purpose::PasswordReset, b).await
}

#[derive(Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
    client_secret: Option<String>,
    sid: Option<String>,
}

pub(super) fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

pub(super) fn page(status: StatusCode, title: &str, body: &str) -> axum::response::Response {
    (
        status,
        Html(format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = escape(title)
        )),
    )
        .into_response()
}

/// Validates from a link; a page (or a redirect to the session's `next_link`) either way.
async fn validate_link(
    s: &AppState,
    purpose: Purpose,
    sid: &str,
    client_secret: &str,
    token: &str,
) -> axum::response::Response {
    match s
        .accounts()
        .submit_email_token(purpose, sid, client_secret, token)
        .await
    {
        Ok(session) => match session.next_link {
            Some(l) if crate::services::accounts::threepid::safe_next_link(&l) => {
                Redirect::to(&l).into_response()
            }
            _ => page(
                StatusCode::OK,
                "Email address validated",
                "<p>Your email address has been validated. You can go back to the application.</p>",
            ),
        },
        Err(e) => page(
            e.status,
            "Validation failed",
            "<p>This link is invalid or has expired. Ask the application for a new one.</p>",
        ),
    }
}

/// The link of registration and add_threepid emails (GET, as Synapse).
pub async fn link_register(State(s): State<AppState>, Query(q): Query<LinkQuery>) -> ApiResult {
    link(&s, Purpose::Registration, q).await
}

pub async fn link_add(State(s): State<AppState>, Query(q): Query<LinkQuery>) -> ApiResult {
    link(&s, Purpose::AddThreepid, q).await
}

async fn link(s: &AppState, purpose: Purpose, q: LinkQuery) -> ApiResult {
    let (Some(token), Some(secret), Some(sid)) = (q.token, q.client_secret, q.sid) else {
        return Err(Error::missing_param("Missing token, client_secret or sid"));
    };
    Ok(validate_link(s, purpose, &sid, &secret, &token).await)
}

/// The password reset link: a confirmation page whose form POSTs back, so that a link opened
/// by a mail scanner does not validate the session (as Synapse).
pub async fn password_reset_page(Query(q): Query<LinkQuery>) -> ApiResult {
    let (Some(token), Some(secret), Some(sid)) = (q.token, q.client_secret, q.sid) else {
        return Err(Error::missing_param("Missing token, client_secret or sid"));
    };
    Ok(page(
        StatusCode::OK,
        "Reset your password",
        &format!(
            "<p>Confirm that you want to reset your password.</p><form method=\"post\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <input type=\"hidden\" name=\"client_secret\" value=\"{}\">\
             <input type=\"hidden\" name=\"sid\" value=\"{}\">\
             <button type=\"submit\">Confirm</button></form>",
            escape(&token),
            escape(&secret),
            escape(&sid)
        ),
    ))
}

/// The confirmation form of the password reset page (`application/x-www-form-urlencoded`).
pub async fn password_reset_confirm(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> ApiResult {
    let text = std::str::from_utf8(&body).map_err(|_| Error::bad_json("Invalid form"))?;
    let pairs = form_pairs(text);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::missing_param(format!("Missing {k}")))
    };
    let (token, secret, sid) = (get("token")?, get("client_secret")?, get("sid")?);
    Ok(validate_link(&s, Purpose::PasswordReset, &sid, &secret, &token).await)
}

pub async fn list(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    ok(s.accounts().list_threepids(&r.user_id).await?)
}

#[derive(Deserialize)]
pub struct AddBody {
    auth: Option<AuthData>,
    #[serde(flatten)]
    creds: ThreepidCreds,
}

/// `POST /account/3pid/add`: the password stage, then the validated add_threepid session.
pub async fn add(State(s): State<AppState>, Auth(r): Auth, Json(b): Json<AddBody>) -> ApiResult {
    s.accounts().uia_password(&r, b.auth).await?;
    s.accounts().add_threepid(&r, &b.creds).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
pub struct DeleteBody {
    medium: String,
    address: String,
}

pub async fn delete(
    State(s): State<AppState>,
    Auth(r): Auth,
    Json(b): Json<DeleteBody>,
) -> ApiResult {
    s.accounts()
        .delete_threepid(&r.user_id, &b.medium, &b.address)
        .await?;
    ok(json!({ "id_server_unbind_result": "no-support" }))
}
