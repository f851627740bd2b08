//! Room summaries (`/v1/room_summary`, MSC3266), `?format=event` on state reads (v1.16) and the
//! client's `timestamp_to_event`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

crate::both_backends!(
    summary_by_id_alias_and_visibility,
    summary_over_federation,
    state_read_formats,
    timestamp_to_event_both_ways
);

async fn summary_by_id_alias_and_visibility(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let public = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "Lobby", "topic": "Hello",
                   "room_alias_name": "lobby"}),
        )
        .await;
    let private = s
        .create_room(&alice, json!({"preset": "private_chat", "name": "Secret"}))
        .await;

    // A room anyone may join: its summary for a non-member, by id and by alias.
    let path = format!("/_matrix/client/v1/room_summary/{}", enc(&public));
    let (st, v) = s.get(&bob, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], public);
    assert_eq!(v["name"], "Lobby");
    assert_eq!(v["topic"], "Hello");
    assert_eq!(v["join_rule"], "public");
    assert_eq!(v["num_joined_members"], 1);
    assert_eq!(v["membership"], "leave");
    assert_eq!(v["guest_can_join"], false);
    assert_eq!(v["world_readable"], false);
    assert!(v["room_version"].is_string(), "{v}");
    let alias = v["canonical_alias"].as_str().unwrap().to_owned();
    assert!(alias.starts_with("#lobby:"), "{v}");
    let (st, by_alias) = s
        .get(
            &bob,
            &format!("/_matrix/client/v1/room_summary/{}", enc(&alias)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{by_alias}");
    assert_eq!(by_alias["room_id"], public);
    // Without a token: the same, without a membership.
    let (st, anon) = s.call(Method::GET, &path, None, None).await;
    assert_eq!(st, StatusCode::OK, "{anon}");
    assert_eq!(anon["name"], "Lobby");
    assert!(anon.get("membership").is_none(), "{anon}");
    // A bad token is refused, not taken as none.
    let (st, _) = s.call(Method::GET, &path, Some("nope"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // The unstable path adds the im.nheko.summary names.
    let (st, u) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/unstable/im.nheko.summary/rooms/{}/summary",
                enc(&public)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["im.nheko.summary.room_version"], v["room_version"]);

    // An invite-only room: its members see it, nobody else (404, as for an unknown room).
    let priv_path = format!("/_matrix/client/v1/room_summary/{}", enc(&private));
    let (st, v) = s.get(&alice, &priv_path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["membership"], "join");
    assert_eq!(v["join_rule"], "invite");
    let (st, v) = s.get(&bob, &priv_path).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    let (st, _) = s.call(Method::GET, &priv_path, None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Invited: visible, with the membership.
    s.invite(&alice, &private, &bob).await;
    let (st, v) = s.get(&bob, &priv_path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["membership"], "invite");
    // Unknown rooms and malformed ids.
    let (st, _) = s
        .get(
            &bob,
            "/_matrix/client/v1/room_summary/%21nothing%3Alocalhost",
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s.get(&bob, "/_matrix/client/v1/room_summary/garbage").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    s.stop().await;
}

async fn state_read_formats(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({"name": "Named"})).await;
    let base = format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room));
    let (st, content) = s.get(&alice, &base).await;
    assert_eq!(st, StatusCode::OK, "{content}");
    assert_eq!(content, json!({"name": "Named"}));
    let (st, same) = s.get(&alice, &format!("{base}?format=content")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(same, content);
    let (st, ev) = s.get(&alice, &format!("{base}/?format=event")).await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert_eq!(ev["type"], "m.room.name");
    assert_eq!(ev["state_key"], "");
    assert_eq!(ev["sender"], alice.user_id);
    assert_eq!(ev["room_id"], room);
    assert_eq!(ev["content"], content);
    assert!(ev["event_id"].as_str().unwrap().starts_with('$'), "{ev}");
    assert!(ev["origin_server_ts"].is_number(), "{ev}");
    let member = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}?format=event",
        enc(&room),
        enc(&alice.user_id)
    );
    let (st, ev) = s.get(&alice, &member).await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert_eq!(ev["state_key"], alice.user_id);
    assert_eq!(ev["content"]["membership"], "join");
    let (st, v) = s.get(&alice, &format!("{base}?format=whole")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_INVALID_PARAM");
    s.stop().await;
}

async fn timestamp_to_event_both_ways(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let first = s.send_text(&alice, &room, "t1", "first").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = palabre::util::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = s.send_text(&alice, &room, "t2", "second").await;
    let at = |dir: &str, ts: i64| {
        format!(
            "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}",
            enc(&room)
        )
    };
    let (st, v) = s.get(&alice, &at("f", between)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event_id"], second);
    assert!(v["origin_server_ts"].as_i64().unwrap() >= between);
    let (st, v) = s.get(&alice, &at("b", between)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event_id"], first);
    let (st, v) = s
        .get(&alice, &at("f", palabre::util::now_ms() + 60_000))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s.get(&alice, &at("x", between)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.get(&bob, &at("f", between)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    s.stop().await;
}

/// A room this server does not know is summarised by a server named in `via` (or by the
/// alias's server), over federation; one that server keeps to itself stays 404.
async fn summary_over_federation(b: Backend) {
    let (a, bsrv, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bsrv.register("bob").await;
    let far = a
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "Far away", "room_alias_name": "far"}),
        )
        .await;
    let hidden = a
        .create_room(&alice, json!({"preset": "private_chat", "name": "Hidden"}))
        .await;
    let path = |room: &str| {
        format!(
            "/_matrix/client/v1/room_summary/{}?via={}",
            enc(room),
            enc(&a.name())
        )
    };
    let (st, v) = bsrv.get(&bob, &path(&far)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], far);
    assert_eq!(v["name"], "Far away");
    assert_eq!(v["join_rule"], "public");
    assert_eq!(v["num_joined_members"], 1);
    assert_eq!(v["membership"], "leave");
    // By the alias, whose server is asked.
    let alias = format!("#far:{}", a.name());
    let (st, v) = bsrv
        .get(
            &bob,
            &format!("/_matrix/client/v1/room_summary/{}", enc(&alias)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], far);
    // Without via, a room unknown here is not found; an invite-only room is not shown.
    let (st, _) = bsrv
        .get(
            &bob,
            &format!("/_matrix/client/v1/room_summary/{}", enc(&far)),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = bsrv.get(&bob, &path(&hidden)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    a.stop().await;
    bsrv.stop().await;
}
