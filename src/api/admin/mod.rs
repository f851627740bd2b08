//! The admin API, at Synapse's paths (`/_synapse/admin/…`) so existing tools work. Every
//! endpoint is for server admins only (403 `M_FORBIDDEN` otherwise).

mod server_notices;
mod validity;

use axum::{
    routing::{post, put},
    Router,
};

use super::AppState;
use crate::{services::accounts::Requester, Error, Result};

/// Refuses a requester who is not a server admin.
fn require_admin(r: &Requester) -> Result<()> {
    if r.is_admin {
        Ok(())
    } else {
        Err(Error::forbidden("You are not a server admin"))
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
