//! The admin API, at Synapse's paths (`/_synapse/admin/…`) so existing tools work. Every
//! endpoint is for server admins only (403 `M_FORBIDDEN` otherwise).

mod server_notices;
mod validity;

use axum::{
    routing::{post, put},
    Router,
};

use super::{AppState, Auth};
use crate::{services::requester::Requester, Error};

/// An authenticated server admin. The flag is read from the database at each request (not
/// cached with the token): a demoted admin loses access at once, a promoted user gains it.
pub struct Admin(pub Requester);

impl axum::extract::FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Error> {
        let Auth(r) = Auth::from_request_parts(parts, state).await?;
        if state.accounts().is_admin(&r.user_id).await? {
            Ok(Admin(r))
        } else {
            Err(Error::forbidden("You are not a server admin"))
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/_synapse/admin/v1/account_validity/validity",
            post(validity::set),
        )
        .route(
            "/_synapse/admin/v1/send_server_notice",
            post(server_notices::send),
        )
        .route(
            "/_synapse/admin/v1/send_server_notice/{txn_id}",
            put(server_notices::send_txn),
        )
}
