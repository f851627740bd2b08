//! Server-server API: the key server, the version endpoint, OpenID userinfo, queries, media,
//! device lists and keys, the room directory.

pub mod auth;
mod directory;
mod e2ee;
mod keys;
mod media;
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
            "/_matrix/federation/v1/media/download/{media_id}",
            get(media::download),
        )
        .route(
            "/_matrix/federation/v1/media/thumbnail/{media_id}",
            get(media::thumbnail),
        )
        .route(
            "/_matrix/federation/v1/user/devices/{user_id}",
            get(e2ee::user_devices),
        )
        .route("/_matrix/federation/v1/user/keys/query", post(e2ee::query))
        .route("/_matrix/federation/v1/user/keys/claim", post(e2ee::claim))
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(directory::get_public_rooms).post(directory::post_public_rooms),
        )
        .route(
            "/_matrix/federation/v1/openid/userinfo",
            get(openid::userinfo),
        )
}
