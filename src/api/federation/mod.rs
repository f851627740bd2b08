//! Server-server API: the key server, the version endpoint, OpenID userinfo, queries, media,
//! device lists and keys, the room directory.

mod annuaire;
pub mod auth;
mod directory;
mod e2ee;
mod events;
mod handshakes;
mod media;
mod openid;
mod query;
mod server_keys;
mod tchap_rooms;
mod transactions;

use axum::{
    routing::{get, post},
    Router,
};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys::server_keys))
        .route(
            "/_matrix/key/v2/query/{server}",
            get(server_keys::query_one),
        )
        .route("/_matrix/key/v2/query", post(server_keys::query_many))
        .route("/_matrix/federation/v1/query/profile", get(query::profile))
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query::directory),
        )
        .route(
            "/_matrix/federation/v1/make_join/{room}/{user}",
            get(handshakes::make_join),
        )
        .route(
            "/_matrix/federation/v2/send_join/{room}/{event}",
            axum::routing::put(handshakes::send_join),
        )
        .route(
            "/_matrix/federation/v2/invite/{room}/{event}",
            axum::routing::put(handshakes::invite),
        )
        .route(
            "/_matrix/federation/v1/make_leave/{room}/{user}",
            get(handshakes::make_leave),
        )
        .route(
            "/_matrix/federation/v2/send_leave/{room}/{event}",
            axum::routing::put(handshakes::send_leave),
        )
        .route(
            "/_matrix/federation/v1/make_knock/{room}/{user}",
            get(handshakes::make_knock),
        )
        .route(
            "/_matrix/federation/v1/send_knock/{room}/{event}",
            axum::routing::put(handshakes::send_knock),
        )
        .route(
            "/_matrix/federation/v1/send/{txn}",
            axum::routing::put(transactions::send),
        )
        .route("/_matrix/federation/v1/event/{event}", get(events::event))
        .route(
            "/_matrix/federation/v1/get_missing_events/{room}",
            post(events::get_missing_events),
        )
        .route(
            "/_matrix/federation/v1/state_ids/{room}",
            get(events::state_ids),
        )
        .route("/_matrix/federation/v1/state/{room}", get(events::state))
        .route(
            "/_matrix/federation/v1/event_auth/{room}/{event}",
            get(events::event_auth),
        )
        .route(
            "/_matrix/federation/v1/backfill/{room}",
            get(events::backfill),
        )
        .route(
            "/_matrix/federation/v1/timestamp_to_event/{room}",
            get(events::timestamp_to_event),
        )
        .route(
            "/_matrix/federation/v1/hierarchy/{room}",
            get(events::hierarchy),
        )
        .route("/_matrix/federation/v1/version", get(server_keys::version))
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
        .route(
            crate::services::policy::email_invites::ANNOUNCE_PATH,
            post(tchap_rooms::email_invite),
        )
        .route(
            crate::services::policy::email_invites::BOUND_PATH,
            post(tchap_rooms::email_bound),
        )
        .route(
            "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/changes",
            get(annuaire::changes),
        )
        .route(
            "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/notify",
            axum::routing::put(annuaire::notify),
        )
}
