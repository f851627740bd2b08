//! Every admin endpoint refuses a request without a token (401) and a user who is not a
//! server admin (403 `M_FORBIDDEN`), and changes nothing for them; the list below is every
//! route of `src/api/admin` (bar `/v1/register`, which authenticates by its HMAC, and
//! `/v1/server_version`, public as Synapse's).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

crate::both_backends!(every_admin_route_refuses_others);

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_synapse/admin/v1/scheduled_tasks"),
    ("POST", "/_synapse/admin/v1/account_validity/validity"),
    ("POST", "/_synapse/admin/v1/send_server_notice"),
    ("PUT", "/_synapse/admin/v1/send_server_notice/t1"),
    ("GET", "/_synapse/admin/v2/users"),
    ("GET", "/_synapse/admin/v3/users"),
    ("GET", "/_synapse/admin/v2/users/{user}"),
    ("PUT", "/_synapse/admin/v2/users/{user}"),
    ("GET", "/_synapse/admin/v1/users/{user}/admin"),
    ("PUT", "/_synapse/admin/v1/users/{user}/admin"),
    ("GET", "/_synapse/admin/v1/whois/{user}"),
    ("POST", "/_synapse/admin/v1/deactivate/{user}"),
    ("POST", "/_synapse/admin/v1/reset_password/{user}"),
    ("PUT", "/_synapse/admin/v1/suspend/{user}"),
    ("GET", "/_synapse/admin/v1/users/{user}/joined_rooms"),
    ("GET", "/_synapse/admin/v1/users/{user}/memberships"),
    ("GET", "/_synapse/admin/v1/users/{user}/accountdata"),
    ("GET", "/_synapse/admin/v1/users/{user}/pushers"),
    ("GET", "/_synapse/admin/v1/username_available?username=x"),
    ("GET", "/_synapse/admin/v1/threepid/email/users/a%40b.c"),
    ("GET", "/_synapse/admin/v2/users/{user}/devices"),
    ("POST", "/_synapse/admin/v2/users/{user}/devices"),
    ("GET", "/_synapse/admin/v2/users/{user}/devices/D"),
    ("PUT", "/_synapse/admin/v2/users/{user}/devices/D"),
    ("DELETE", "/_synapse/admin/v2/users/{user}/devices/D"),
    ("POST", "/_synapse/admin/v2/users/{user}/delete_devices"),
    ("POST", "/_synapse/admin/v1/users/{user}/shadow_ban"),
    ("DELETE", "/_synapse/admin/v1/users/{user}/shadow_ban"),
    ("GET", "/_synapse/admin/v1/users/{user}/override_ratelimit"),
    ("POST", "/_synapse/admin/v1/users/{user}/override_ratelimit"),
    (
        "DELETE",
        "/_synapse/admin/v1/users/{user}/override_ratelimit",
    ),
    ("POST", "/_synapse/admin/v1/users/{user}/login"),
    ("GET", "/_synapse/admin/v1/users/{user}/sent_invite_count"),
    (
        "GET",
        "/_synapse/admin/v1/users/{user}/cumulative_joined_room_count",
    ),
    ("GET", "/_synapse/admin/v1/rooms"),
    ("GET", "/_synapse/admin/v1/rooms/{room}"),
    ("DELETE", "/_synapse/admin/v1/rooms/{room}"),
    ("DELETE", "/_synapse/admin/v2/rooms/{room}"),
    ("GET", "/_synapse/admin/v2/rooms/{room}/delete_status"),
    ("GET", "/_synapse/admin/v2/rooms/delete_status/x"),
    ("GET", "/_synapse/admin/v1/rooms/{room}/members"),
    ("GET", "/_synapse/admin/v1/rooms/{room}/state"),
    ("GET", "/_synapse/admin/v1/rooms/{room}/block"),
    ("PUT", "/_synapse/admin/v1/rooms/{room}/block"),
    ("GET", "/_synapse/admin/v1/rooms/{room}/forward_extremities"),
    ("GET", "/_synapse/admin/v1/event_reports"),
    ("GET", "/_synapse/admin/v1/event_reports/1"),
    ("DELETE", "/_synapse/admin/v1/event_reports/1"),
    ("GET", "/_synapse/admin/v1/user_reports"),
    ("GET", "/_synapse/admin/v1/user_reports/1"),
    ("DELETE", "/_synapse/admin/v1/user_reports/1"),
    ("GET", "/_synapse/admin/v1/media/localhost/abc"),
    ("DELETE", "/_synapse/admin/v1/media/localhost/abc"),
    ("POST", "/_synapse/admin/v1/media/quarantine/localhost/abc"),
    (
        "POST",
        "/_synapse/admin/v1/media/unquarantine/localhost/abc",
    ),
    ("POST", "/_synapse/admin/v1/media/protect/abc"),
    ("GET", "/_synapse/admin/v1/media/quarantine_changes"),
    ("POST", "/_synapse/admin/v1/media/unprotect/abc"),
    ("GET", "/_synapse/admin/v1/room/{room}/media"),
    ("POST", "/_synapse/admin/v1/room/{room}/media/quarantine"),
    ("POST", "/_synapse/admin/v1/quarantine_media/{room}"),
    ("POST", "/_synapse/admin/v1/user/{user}/media/quarantine"),
    ("GET", "/_synapse/admin/v1/users/{user}/media"),
    ("DELETE", "/_synapse/admin/v1/users/{user}/media"),
    (
        "POST",
        "/_synapse/admin/v1/media/delete?before_ts=99999999999",
    ),
    (
        "POST",
        "/_synapse/admin/v1/media/localhost/delete?before_ts=99999999999",
    ),
    (
        "POST",
        "/_synapse/admin/v1/purge_media_cache?before_ts=99999999999",
    ),
    ("GET", "/_synapse/admin/v1/statistics/users/media"),
    ("GET", "/_synapse/admin/v1/statistics/database/rooms"),
    ("GET", "/_synapse/admin/v1/experimental_features/{user}"),
    ("PUT", "/_synapse/admin/v1/experimental_features/{user}"),
    ("GET", "/_synapse/admin/v1/federation/destinations"),
    (
        "GET",
        "/_synapse/admin/v1/federation/destinations/other.example",
    ),
    (
        "GET",
        "/_synapse/admin/v1/federation/destinations/other.example/rooms",
    ),
    (
        "POST",
        "/_synapse/admin/v1/federation/destinations/other.example/reset_connection",
    ),
    (
        "POST",
        "/_synapse/admin/v1/users/{user}/_allow_cross_signing_replacement_without_uia",
    ),
    ("GET", "/_synapse/admin/v1/rooms/{room}/messages"),
    ("GET", "/_synapse/admin/v1/rooms/{room}/context/$e"),
    (
        "GET",
        "/_synapse/admin/v1/rooms/{room}/timestamp_to_event?ts=0",
    ),
    ("GET", "/_synapse/admin/v1/rooms/{room}/hierarchy"),
    ("GET", "/_synapse/admin/v1/fetch_event/$e"),
    ("POST", "/_synapse/admin/v1/join/{room}"),
    ("POST", "/_synapse/admin/v1/rooms/{room}/make_room_admin"),
    (
        "DELETE",
        "/_synapse/admin/v1/rooms/{room}/forward_extremities",
    ),
    ("POST", "/_synapse/admin/v1/purge_history/{room}"),
    ("GET", "/_synapse/admin/v1/purge_history_status/x"),
    ("POST", "/_synapse/admin/v1/user/{user}/redact"),
    ("GET", "/_synapse/admin/v1/user/redact_status/x"),
    ("GET", "/_synapse/admin/v1/auth_providers/oidc/users/x"),
    ("GET", "/_synapse/admin/v1/registration_tokens"),
    ("POST", "/_synapse/admin/v1/registration_tokens/new"),
    ("GET", "/_synapse/admin/v1/registration_tokens/abc"),
    ("PUT", "/_synapse/admin/v1/registration_tokens/abc"),
    ("DELETE", "/_synapse/admin/v1/registration_tokens/abc"),
];

async fn every_admin_route_refuses_others(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&admin, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    for (method, path) in ROUTES {
        let path = path
            .replace("{user}", &enc(&bob.user_id))
            .replace("{room}", &enc(&room));
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (st, v) = s.call(m.clone(), &path, None, Some(json!({}))).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token: {v}"
        );
        let (st, v) = s
            .call(m.clone(), &path, Some(&bob.token), Some(json!({})))
            .await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{method} {path} as a plain user: {v}"
        );
    }
    // Nothing changed for them: bob is still a plain, active member.
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v2/users/{}", enc(&bob.user_id)),
        )
        .await;
    assert_eq!(
        (v["admin"].clone(), v["deactivated"].clone()),
        (json!(false), json!(false)),
        "{v}"
    );
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/rooms/{}/members", enc(&room)),
        )
        .await;
    assert_eq!(v["total"], 2, "{v}");
    // And the routes exist: the admin gets neither 401, 403 nor 404 M_UNRECOGNIZED on a read.
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let path = path
            .replace("{user}", &enc(&bob.user_id))
            .replace("{room}", &enc(&room));
        let (st, v) = s.get(&admin, &path).await;
        assert!(
            st != StatusCode::UNAUTHORIZED
                && st != StatusCode::FORBIDDEN
                && v["errcode"] != "M_UNRECOGNIZED",
            "{method} {path} as admin: {st} {v}"
        );
    }
    s.stop().await;
}
