//! Server-server API. For now: the key server, the version endpoint and OpenID userinfo
//! (federation proper comes with its own issue).

mod keys;
mod openid;

use axum::{routing::get, Router};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(keys::server_keys))
        .route("/_matrix/federation/v1/version", get(keys::version))
        .route(
            "/_matrix/federation/v1/openid/userinfo",
            get(openid::userinfo),
        )
}
