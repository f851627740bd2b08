//! Account validity (TCHAP.md §5, Synapse's `account_validity` module): asking for a new
//! renewal link, and the link itself (an HTML page, opened from an email).

use axum::{
    extract::State,
    http::{StatusCode, Uri},
};
use serde_json::json;

use crate::{
    api::{form_pairs, ok, ApiResult, AppState, Auth},
    services::policy::validity::{format_date, Renewal},
};

/// `send_mail` as clients call it, and as Synapse's email module serves it.
pub const SEND_MAIL: &str = "/_matrix/client/unstable/account_validity/send_mail";
pub const SEND_MAIL_SYNAPSE: &str = "/_synapse/client/email_account_validity/send_mail";
/// The renewal link of the emails.
pub use crate::services::policy::validity::RENEW_PATH as RENEW;

/// `POST …/send_mail`: a new renewal link to every email of the account (allowed while
/// expired).
pub async fn send_mail(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    s.policy().send_renewal_mail(&r.user_id).await?;
    ok(json!({}))
}

fn page(status: StatusCode, title: &str, text: &str) -> axum::response::Response {
    super::threepid::page(
        status,
        title,
        &format!("<p>{}</p>", super::threepid::escape(text)),
    )
}

/// `GET …/renew?token=`: extends the account once per link.
pub async fn renew(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let token = uri.query().and_then(|q| {
        form_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        // Unknown to the validity module when it is off, as every other route.
        s.policy().validity_on()?;
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "Invalid link",
            "This renewal link has no token.",
        ));
    };
    Ok(match s.policy().renew_with_token(&token).await? {
        Renewal::Renewed { expiration_ts } => page(
            StatusCode::OK,
            "Account renewed",
            &format!(
                "Your account has been renewed. It is now valid until {}.",
                format_date(expiration_ts)
            ),
        ),
        Renewal::AlreadyRenewed { expiration_ts } => page(
            StatusCode::OK,
            "Account already renewed",
            &format!(
                "This link was already used: your account is valid until {}.",
                format_date(expiration_ts)
            ),
        ),
        Renewal::Unknown => page(
            StatusCode::NOT_FOUND,
            "Invalid link",
            "This renewal link is not valid. Ask for a new one from your application.",
        ),
    })
}
