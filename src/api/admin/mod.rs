//! The admin API, at Synapse's paths (`/_synapse/admin/…`) so existing tools work. Every
//! endpoint is for server admins only (401 without a token, 403 `M_FORBIDDEN` otherwise), and
//! every change is audited (one `palabre::admin` log line with the admin's id).

mod federation;
mod history;
mod media;
mod registration_tokens;
mod reports;
mod room_reads;
mod rooms;
mod server;
mod server_notices;
mod user_powers;
mod users;
mod validity;

use std::collections::HashMap;

use axum::{
    routing::{get, post, put},
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

/// Writes one audit line for an admin action: who, what, on what.
pub fn audit(admin: &Requester, action: &str, target: &str) {
    tracing::info!(target: "palabre::admin", admin = %admin.user_id, action, target, "admin action");
}

/// The query parameters of an admin listing, read as Synapse reads them: repeated keys kept,
/// booleans `true`/`false`, integers in decimal; anything else is 400 `M_INVALID_PARAM`.
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in super::form_pairs(query.unwrap_or("")) {
            map.entry(k).or_default().push(v);
        }
        Params(map)
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(|v| v.first()).cloned()
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.str(key).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(Error::invalid_param(format!(
                "Boolean query parameter {key:?} must be one of ['true', 'false']"
            ))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Error> {
        self.str(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Error::invalid_param(format!("Query parameter {key:?} must be an integer"))
                })
            })
            .transpose()
    }
}

pub fn routes() -> Router<AppState> {
    let r = Router::new()
        .route("/_synapse/admin/v1/server_version", get(server::version))
        .route(
            "/_synapse/admin/v1/scheduled_tasks",
            get(server::scheduled_tasks),
        )
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
        );
    let r = user_powers::routes(users::routes(r));
    let r = history::routes(room_reads::routes(federation::routes(
        registration_tokens::routes(r),
    )));
    media::routes(reports::routes(rooms::routes(r)))
}
