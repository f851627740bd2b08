//! Client-server API, one file per spec chapter. Every route is served under `/v3` and the
//! legacy `/r0` prefix that older clients still call.

mod account;
mod account_data;
pub(crate) mod account_validity;
mod backup;
mod dehydrated;
mod devices;
mod directory;
mod discovery;
mod e2ee_keys;
mod events;
mod media;
mod openid;
mod presence;
mod profile;
mod push;
mod receipts;
mod relations;
mod reporting;
mod room_membership;
mod room_summary;
mod rooms;
mod search;
mod session;
mod spaces;
mod sync;
mod tags;
mod thirdparty;
mod threepid;
mod to_device;
mod typing;
mod voip;

use axum::{
    routing::{get, post, put},
    Router,
};

use super::AppState;

fn versioned() -> Router<AppState> {
    Router::new()
        // session.rs
        .route("/login", get(session::login_flows).post(session::login))
        .route("/register", post(session::register))
        .route("/register/available", get(session::register_available))
        .route("/logout", post(session::logout))
        .route("/logout/all", post(session::logout_all))
        .route("/refresh", post(session::refresh))
        // account.rs
        .route("/account/whoami", get(account::whoami))
        .route("/account/password", post(account::change_password))
        .route("/account/deactivate", post(account::deactivate))
        .route("/password_policy", get(account::password_policy))
        // threepid.rs
        .route(
            "/register/email/requestToken",
            post(threepid::request_token_register),
        )
        .route(
            "/account/3pid/email/requestToken",
            post(threepid::request_token_add),
        )
        .route(
            "/account/password/email/requestToken",
            post(threepid::request_token_password),
        )
        .route("/account/3pid", get(threepid::list))
        .route("/account/3pid/add", post(threepid::add))
        .route("/account/3pid/delete", post(threepid::delete))
        .route("/capabilities", get(discovery::capabilities))
        // devices.rs
        .route("/devices", get(devices::list))
        .route(
            "/devices/{device_id}",
            get(devices::get)
                .put(devices::rename)
                .delete(devices::delete),
        )
        .route("/delete_devices", post(devices::delete_many))
        // profile.rs
        .route("/profile/{user_id}", get(profile::get_all))
        .route(
            "/profile/{user_id}/{field}",
            get(profile::get_field)
                .put(profile::set_field)
                .delete(profile::delete_field),
        )
        // presence.rs
        .route(
            "/presence/{user_id}/status",
            get(presence::get).put(presence::set),
        )
        // push.rs
        .route("/pushrules/", get(push::get_all))
        .route("/pushrules", get(push::get_all))
        .route("/pushrules/global/", get(push::get_global))
        .route(
            "/pushrules/{scope}/{kind}/{rule_id}",
            get(push::get_rule)
                .put(push::put_rule)
                .delete(push::delete_rule),
        )
        .route(
            "/pushrules/{scope}/{kind}/{rule_id}/enabled",
            get(push::get_enabled).put(push::put_enabled),
        )
        .route(
            "/pushrules/{scope}/{kind}/{rule_id}/actions",
            get(push::get_actions).put(push::put_actions),
        )
        .route("/notifications", get(push::notifications))
        .route("/pushers", get(push::pushers))
        .route("/pushers/set", post(push::set_pusher))
        // rooms.rs
        .route("/createRoom", post(rooms::create))
        .route(
            "/directory/room/{alias}",
            get(rooms::get_alias)
                .put(rooms::put_alias)
                .delete(rooms::delete_alias),
        )
        .route("/rooms/{room_id}/aliases", get(rooms::room_aliases))
        .route(
            "/directory/list/room/{room_id}",
            get(rooms::get_visibility).put(rooms::set_visibility),
        )
        .route("/joined_rooms", get(rooms::joined_rooms))
        // directory.rs, search.rs
        .route(
            "/publicRooms",
            get(directory::public_rooms).post(directory::search_public_rooms),
        )
        .route("/user_directory/search", post(directory::search_users))
        .route("/search", post(search::search))
        .route("/rooms/{room_id}/upgrade", post(rooms::upgrade))
        // reporting.rs
        .route("/rooms/{room_id}/report", post(reporting::report_room))
        .route(
            "/rooms/{room_id}/report/{event_id}",
            post(reporting::report_event),
        )
        // openid.rs
        .route(
            "/user/{user_id}/openid/request_token",
            post(openid::request_token),
        )
        // tags.rs
        .route("/user/{user_id}/rooms/{room_id}/tags", get(tags::get))
        .route(
            "/user/{user_id}/rooms/{room_id}/tags/{tag}",
            put(tags::put).delete(tags::delete),
        )
        // room_membership.rs
        .route("/join/{room}", post(room_membership::join))
        .route("/knock/{room}", post(room_membership::knock))
        .route("/rooms/{room_id}/join", post(room_membership::join_by_id))
        .route("/rooms/{room_id}/invite", post(room_membership::invite))
        .route("/rooms/{room_id}/leave", post(room_membership::leave))
        .route("/rooms/{room_id}/forget", post(room_membership::forget))
        .route("/rooms/{room_id}/kick", post(room_membership::kick))
        .route("/rooms/{room_id}/ban", post(room_membership::ban))
        .route("/rooms/{room_id}/unban", post(room_membership::unban))
        .route("/rooms/{room_id}/members", get(room_membership::members))
        .route(
            "/rooms/{room_id}/joined_members",
            get(room_membership::joined_members),
        )
        // events.rs
        .route(
            "/rooms/{room_id}/send/{event_type}/{txn_id}",
            put(events::send),
        )
        .route("/rooms/{room_id}/state", get(events::all_state))
        .route(
            "/rooms/{room_id}/state/{event_type}",
            get(events::get_state).put(events::put_state),
        )
        // matrix-js-sdk writes the empty state key as a trailing slash.
        .route(
            "/rooms/{room_id}/state/{event_type}/",
            get(events::get_state).put(events::put_state),
        )
        .route(
            "/rooms/{room_id}/state/{event_type}/{*state_key}",
            get(events::get_state_key).put(events::put_state_key),
        )
        .route(
            "/rooms/{room_id}/redact/{event_id}/{txn_id}",
            put(events::redact),
        )
        .route("/rooms/{room_id}/event/{event_id}", get(events::get_event))
        .route("/rooms/{room_id}/messages", get(events::messages))
        .route("/rooms/{room_id}/context/{event_id}", get(events::context))
        // sync.rs
        .route("/sync", get(sync::sync))
        .route("/user/{user_id}/filter", post(sync::create_filter))
        .route("/user/{user_id}/filter/{filter_id}", get(sync::get_filter))
        // typing.rs, receipts.rs
        .route("/rooms/{room_id}/typing/{user_id}", put(typing::set))
        .route(
            "/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
            post(receipts::receipt),
        )
        .route(
            "/rooms/{room_id}/read_markers",
            post(receipts::read_markers),
        )
        // e2ee_keys.rs
        .route("/keys/upload", post(e2ee_keys::upload))
        .route("/keys/query", post(e2ee_keys::query))
        .route("/keys/claim", post(e2ee_keys::claim))
        .route("/keys/changes", get(e2ee_keys::changes))
        .route(
            "/keys/device_signing/upload",
            post(e2ee_keys::device_signing_upload),
        )
        .route(
            "/keys/signatures/upload",
            post(e2ee_keys::signatures_upload),
        )
        // to_device.rs
        .route("/sendToDevice/{kind}/{txn}", put(to_device::send))
        // backup.rs
        .route(
            "/room_keys/version",
            post(backup::create_version).get(backup::current_version),
        )
        .route(
            "/room_keys/version/{version}",
            get(backup::get_version)
                .put(backup::update_version)
                .delete(backup::delete_version),
        )
        .route(
            "/room_keys/keys",
            put(backup::put_all)
                .get(backup::get_all)
                .delete(backup::delete_all),
        )
        .route(
            "/room_keys/keys/{room_id}",
            put(backup::put_room)
                .get(backup::get_room)
                .delete(backup::delete_room),
        )
        .route(
            "/room_keys/keys/{room_id}/{session_id}",
            put(backup::put_session)
                .get(backup::get_session)
                .delete(backup::delete_session),
        )
        // thirdparty.rs
        .route("/thirdparty/protocols", get(thirdparty::protocols))
        .route("/thirdparty/protocol/{protocol}", get(thirdparty::protocol))
        .route("/thirdparty/location", get(thirdparty::location_by_alias))
        .route("/thirdparty/location/{protocol}", get(thirdparty::location))
        .route("/thirdparty/user", get(thirdparty::user_by_id))
        .route("/thirdparty/user/{protocol}", get(thirdparty::user))
        // voip.rs
        .route("/voip/turnServer", get(voip::turn_server))
        // account_data.rs
        .route(
            "/user/{user_id}/account_data/{kind}",
            get(account_data::get_global).put(account_data::put_global),
        )
        .route(
            "/user/{user_id}/rooms/{room_id}/account_data/{kind}",
            get(account_data::get_room).put(account_data::put_room),
        )
}

/// The content repository: `/_matrix/media/{v3,r0,v1}` and `/_matrix/client/v1/media`.
fn media_routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/_matrix/media/v1/create", post(media::create))
        .route(
            "/_matrix/client/v1/media/download/{server}/{id}",
            get(media::download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server}/{id}/{name}",
            get(media::download_named),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server}/{id}",
            get(media::thumbnail),
        )
        .route("/_matrix/client/v1/media/config", get(media::config))
        .route(
            "/_matrix/client/v1/media/preview_url",
            get(media::preview_url),
        );
    for v in ["v3", "r0"] {
        r = r
            .route(&format!("/_matrix/media/{v}/upload"), post(media::upload))
            .route(
                &format!("/_matrix/media/{v}/upload/{{server}}/{{id}}"),
                put(media::upload_pending),
            )
            .route(&format!("/_matrix/media/{v}/config"), get(media::config))
            .route(
                &format!("/_matrix/media/{v}/preview_url"),
                get(media::preview_url),
            )
            .route(
                &format!("/_matrix/media/{v}/download/{{server}}/{{id}}"),
                get(media::legacy_download),
            )
            .route(
                &format!("/_matrix/media/{v}/download/{{server}}/{{id}}/{{name}}"),
                get(media::legacy_download_named),
            )
            .route(
                &format!("/_matrix/media/{v}/thumbnail/{{server}}/{{id}}"),
                get(media::legacy_thumbnail),
            );
    }
    r
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(media_routes())
        .nest("/_matrix/client/v3", versioned())
        .nest("/_matrix/client/r0", versioned())
        .route("/_matrix/client/versions", get(discovery::versions))
        // Unstable paths clients still call for endpoints that are stable here (Synapse serves
        // them too): matrix-js-sdk's uploadDeviceSigningKeys (Element's cross-signing set-up
        // and its "can the password alone upload keys" probe) posts to the first; ruma (hence
        // matrix-rust-sdk) uses both against a server without v1.1.
        .route(
            "/_matrix/client/unstable/keys/device_signing/upload",
            post(e2ee_keys::device_signing_upload),
        )
        .route(
            "/_matrix/client/unstable/keys/signatures/upload",
            post(e2ee_keys::signatures_upload),
        )
        // spaces.rs
        .route(
            "/_matrix/client/v1/rooms/{room_id}/hierarchy",
            get(spaces::hierarchy),
        )
        // profile.rs: the unstable path of extended profiles (MSC4133)
        .route(
            "/_matrix/client/unstable/uk.tcpip.msc4133/profile/{user_id}/{field}",
            get(profile::get_field)
                .put(profile::set_field)
                .delete(profile::delete_field),
        )
        // room_summary.rs
        .route(
            "/_matrix/client/v1/room_summary/{room_id_or_alias}",
            get(room_summary::room_summary),
        )
        .route(
            "/_matrix/client/unstable/im.nheko.summary/rooms/{room_id_or_alias}/summary",
            get(room_summary::room_summary_unstable),
        )
        .route(
            "/_matrix/client/v1/rooms/{room_id}/timestamp_to_event",
            get(room_summary::timestamp_to_event),
        )
        // threepid.rs: what validation emails link to, and the `submit_url`s of the codes
        .route(
            "/_matrix/client/unstable/registration/email/submit_token",
            get(threepid::link_register).post(threepid::submit_code_register),
        )
        .route(
            "/_matrix/client/unstable/add_threepid/email/submit_token",
            get(threepid::link_add).post(threepid::submit_code_add),
        )
        .route(
            "/_matrix/client/unstable/password_reset/email/submit_token",
            post(threepid::submit_code_password),
        )
        .route(
            "/_synapse/client/password_reset/email/submit_token",
            get(threepid::password_reset_page).post(threepid::password_reset_confirm),
        )
        .route(
            "/_matrix/client/v1/register/m.login.registration_token/validity",
            get(session::token_validity),
        )
        // relations.rs
        .route(
            "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}",
            get(relations::all),
        )
        .route(
            "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}",
            get(relations::by_type),
        )
        .route(
            "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}",
            get(relations::by_type_and_event_type),
        )
        .route(
            "/_matrix/client/v1/rooms/{room_id}/threads",
            get(relations::threads),
        )
        // dehydrated.rs
        .route(
            "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device",
            put(dehydrated::put)
                .get(dehydrated::get)
                .delete(dehydrated::delete),
        )
        .route(
            "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{device_id}/events",
            post(dehydrated::events),
        )
        // account_validity.rs
        .route(
            account_validity::SEND_MAIL,
            post(account_validity::send_mail),
        )
        .route(
            account_validity::SEND_MAIL_SYNAPSE,
            post(account_validity::send_mail),
        )
        .route(account_validity::RENEW, get(account_validity::renew))
        .route(
            "/.well-known/matrix/client",
            get(discovery::well_known_client),
        )
        .route(
            "/.well-known/matrix/server",
            get(discovery::well_known_server),
        )
}
