//! Server-server API. For now: the key server, the version endpoint and OpenID userinfo
//! (federation proper comes with its own issue).

pub mod auth;
mod keys;
mod openid;
mod query;

use axum::{
    routing::{get, post},
    Router,
};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(keys::server_keys))
        .route("/_matrix/key/v2/query/{server}", get(keys::query_one))
        .route("/_matrix/key/v2/query", post(keys::query_many))
        .route("/_matrix/federation/v1/query/profile", get(query::profile))
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query::directory),
        )
        .route("/_matrix/federation/v1/version", get(keys::version))
        .route(
            "/_matrix/federation/v1/openid/userinfo",
            get(openid::userinfo),
        )
}
