//! Receive-time auth (issue 14 item 13): an event from another server is judged by its own
//! auth events too, not only by the state before it; an event they refuse is rejected, stored
//! flagged (across restarts), never served, and what cites it among its auth events is rejected
//! in turn. Soft-failed events and outliers are never served through /event nor /context. An
//! event citing another room's event among its prev events is refused.

use reqwest::{Method, StatusCode};
use ruma::{
    signatures::{hash_and_sign_event, reference_hash},
    CanonicalJsonValue, RoomVersionId, ServerName,
};
use serde_json::{json, Value};

use crate::common::*;

/// A PDU of `room` built and signed by `s` for `sender` (room version 12), on top of `prev`;
/// `ev` holds its `type`, `content` and `state_key`.
fn forged(
    s: &TestServer,
    room: &str,
    sender: &str,
    ev: Value,
    auth: &[&str],
    prev: &str,
) -> (String, Value) {
    let rules = RoomVersionId::V12.rules().unwrap();
    let v = with(
        ev,
        json!({
            "room_id": room, "sender": sender, "auth_events": auth, "prev_events": [prev],
            "depth": 100, "origin_server_ts": palabre::util::now_ms(),
        }),
    );
    let CanonicalJsonValue::Object(mut obj) = CanonicalJsonValue::try_from(v).unwrap() else {
        panic!("not an object")
    };
    let srv = s.services();
    hash_and_sign_event(
        srv.server_name.as_str(),
        &srv.keys.pair,
        &mut obj,
        &rules.redaction,
    )
    .unwrap();
    let id = format!("${}", reference_hash(&obj, &rules).unwrap());
    (id, serde_json::to_value(&obj).unwrap())
}

/// `PUT /send/{txn}` from `from` to `to`; the answer's per-event results.
async fn send_pdus(from: &TestServer, to: &TestServer, txn: &str, pdus: Vec<Value>) -> Value {
    let body =
        json!({"origin": from.name(), "origin_server_ts": palabre::util::now_ms(), "pdus": pdus});
    let resp = from
        .services()
        .federation()
        .federation_send(
            &ServerName::parse(to.name()).unwrap(),
            Method::PUT,
            &format!("/_matrix/federation/v1/send/{txn}"),
            Some(&body),
        )
        .await
        .unwrap();
    let st = resp.status();
    let v: Value = resp.json().await.unwrap_or_default();
    assert_eq!(st, StatusCode::OK, "{v}");
    v["pdus"].clone()
}

fn msg(body: &str) -> Value {
    json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}})
}

async fn get_event(s: &TestServer, u: &User, room: &str, id: &str) -> (StatusCode, Value) {
    s.get(
        u,
        &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(id)),
    )
    .await
}

async fn context(s: &TestServer, u: &User, room: &str, id: &str) -> (StatusCode, Value) {
    s.get(
        u,
        &format!("/_matrix/client/v3/rooms/{}/context/{}", enc(room), enc(id)),
    )
    .await
}

/// The id of a current state event of a room, as `u` reads it.
async fn state_id(s: &TestServer, u: &User, room: &str, kind: &str, key: &str) -> String {
    let (_, state) = s
        .get(u, &format!("/_matrix/client/v3/rooms/{}/state", enc(room)))
        .await;
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind} in {state}"))["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The latest timeline event of a room, as `u` reads it.
async fn latest(s: &TestServer, u: &User, room: &str) -> String {
    let (st, v) = s
        .get(
            u,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
                enc(room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["chunk"][0]["event_id"].as_str().unwrap().to_owned()
}

async fn timeline_ids(s: &TestServer, u: &User, room: &str) -> Vec<String> {
    let (st, v) = s
        .get(
            u,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Bob of `bs` joins `room` of `a` (public) through `a`.
async fn join_through(bs: &TestServer, bob: &User, room: &str, a: &TestServer) {
    let (st, v) = bs
        .post(
            bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(room),
                enc(&a.name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A public room on A whose first power levels (`pl0`) give bob of B nothing and whose current
/// ones give him 100. Returns (alice, bob, room, pl0).
async fn room_with_promoted_bob(a: &TestServer, bs: &TestServer) -> (User, User, String, String) {
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    join_through(bs, &bob, &room, a).await;
    let pl0 = state_id(a, &alice, &room, "m.room.power_levels", "").await;
    let (st, v) = a
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.power_levels",
                enc(&room)
            ),
            json!({"users": {bob.user_id.clone(): 100}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    (alice, bob, room, pl0)
}

/// Bob's power levels change citing the first power levels (where he has no power) and the
/// message citing it: what each is on A. The change is allowed by the current state (bob has
/// 100 there) but not by its own auth events.
async fn forge_refused_pair(
    a: &TestServer,
    bs: &TestServer,
    alice: &User,
    bob: &User,
    room: &str,
    pl0: &str,
) -> (String, Value, String, Value) {
    let join = state_id(a, alice, room, "m.room.member", &bob.user_id).await;
    let top = latest(a, alice, room).await;
    let (pl_id, pl) = forged(
        bs,
        room,
        &bob.user_id,
        json!({"type": "m.room.power_levels", "state_key": "",
               "content": {"users": {bob.user_id.clone(): 100}, "invite": 0}}),
        &[pl0, &join],
        &top,
    );
    let (m_id, m) = forged(
        bs,
        room,
        &bob.user_id,
        msg("under forged power"),
        &[&pl_id, &join],
        &top,
    );
    (pl_id, pl, m_id, m)
}

/// (a) An event whose auth events do not allow it is rejected: an error in the /send answer,
/// absent from /messages and the state, 404 through /event; an event citing it is rejected.
async fn auth_events_refuse(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let (alice, bob, room, pl0) = room_with_promoted_bob(&a, &bs).await;
    let current_pl = state_id(&a, &alice, &room, "m.room.power_levels", "").await;
    let (pl_id, pl, m_id, m) = forge_refused_pair(&a, &bs, &alice, &bob, &room, &pl0).await;

    let pl_again = pl.clone();
    let res = send_pdus(&bs, &a, "refused-1", vec![pl]).await;
    assert!(res[&pl_id]["error"].is_string(), "{res}");
    assert!(!timeline_ids(&a, &alice, &room).await.contains(&pl_id));
    let (st, v) = get_event(&a, &alice, &room, &pl_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    assert_eq!(
        state_id(&a, &alice, &room, "m.room.power_levels", "").await,
        current_pl
    );

    let res = send_pdus(&bs, &a, "refused-2", vec![m]).await;
    let err = res[&m_id]["error"].as_str().unwrap_or_default();
    assert!(err.contains("rejected auth event"), "{res}");
    assert!(!timeline_ids(&a, &alice, &room).await.contains(&m_id));
    let (st, _) = get_event(&a, &alice, &room, &m_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Sent again, the rejected event stays rejected.
    let res = send_pdus(&bs, &a, "refused-3", vec![pl_again]).await;
    assert!(res[&pl_id]["error"].is_string(), "{res}");
    a.stop().await;
    bs.stop().await;
}

/// (b) The rejected flag is stored: after a restart, an event citing the rejected event among
/// its auth events is rejected because it was rejected (not because it is unknown).
async fn rejection_survives_restart(b: Backend) {
    let cert = fed_cert();
    let (pa, pb) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.database_url = Some(database_url(b, dir.path()).await);
    federating(&mut cfg, &cert, pa);
    let start = |cfg: palabre::config::Config| async move {
        let run = palabre::server::start(cfg).await.unwrap();
        TestServer {
            base: format!("http://{}", run.addr),
            running: Some(run),
            http: reqwest::Client::new(),
            _dir: tempfile::tempdir().unwrap(),
        }
    };
    let a = start(cfg.clone()).await;
    let bs = TestServer::start_with(b, |c| federating(c, &cert, pb)).await;
    let (alice, bob, room, pl0) = room_with_promoted_bob(&a, &bs).await;
    let (pl_id, pl, m_id, m) = forge_refused_pair(&a, &bs, &alice, &bob, &room, &pl0).await;
    let res = send_pdus(&bs, &a, "restart-1", vec![pl]).await;
    assert!(res[&pl_id]["error"].is_string(), "{res}");
    a.stop().await;

    let a = start(cfg).await;
    let (st, _) = get_event(&a, &alice, &room, &pl_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let res = send_pdus(&bs, &a, "restart-2", vec![m]).await;
    let err = res[&m_id]["error"].as_str().unwrap_or_default();
    assert!(err.contains("rejected auth event"), "{res}");
    let (st, _) = get_event(&a, &alice, &room, &m_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    a.stop().await;
    bs.stop().await;
}

/// (c) A soft-failed event (allowed by its auth events and the state before it, refused by the
/// current state) is kept but is 404 through /event and /context, like a rejected one.
async fn soft_failed_not_served(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    join_through(&bs, &bob, &room, &a).await;
    let join = state_id(&a, &alice, &room, "m.room.member", &bob.user_id).await;
    let pl = state_id(&a, &alice, &room, "m.room.power_levels", "").await;
    let before_kick = a.send_text(&alice, &room, "t1", "before the kick").await;
    let (st, v) = a
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Bob's server writes as if the kick had not happened.
    let (id, ev) = forged(
        &bs,
        &room,
        &bob.user_id,
        msg("after my kick"),
        &[&pl, &join],
        &before_kick,
    );
    let res = send_pdus(&bs, &a, "soft-1", vec![ev]).await;
    assert!(res[&id].get("error").is_none(), "{res}");
    assert!(!timeline_ids(&a, &alice, &room).await.contains(&id));
    let (st, v) = get_event(&a, &alice, &room, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    let (st, v) = context(&a, &alice, &room, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    // The event before it is served as usual.
    let (st, _) = context(&a, &alice, &room, &before_kick).await;
    assert_eq!(st, StatusCode::OK);
    a.stop().await;
    bs.stop().await;
}

/// An outlier (an event known only as some event's auth or state) is not served through
/// /event nor /context, even to a member who could see the room's events at that time.
async fn outliers_not_served(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    join_through(&bs, &bob, &room, &a).await;
    let join = state_id(&a, &alice, &room, "m.room.member", &bob.user_id).await;
    let pl = state_id(&a, &alice, &room, "m.room.power_levels", "").await;
    let top = latest(&a, &alice, &room).await;
    let (id, ev) = forged(
        &bs,
        &room,
        &bob.user_id,
        msg("outlier"),
        &[&pl, &join],
        &top,
    );
    // Stored the way fetched auth and state events are.
    let room_id = ruma::RoomId::parse(&room).unwrap();
    let stored = a
        .services()
        .federation()
        .store_outliers(&room_id, &RoomVersionId::V12.rules().unwrap(), &[ev])
        .await
        .unwrap();
    assert!(stored.iter().any(|e| e.as_str() == id));
    let (st, v) = get_event(&a, &alice, &room, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = context(&a, &alice, &room, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    a.stop().await;
    bs.stop().await;
}

/// Fetched events (an auth chain, a state) are judged each after the events it cites, in
/// whatever order they come: a refused one is stored rejected, and so is one citing it; both
/// stay rejected when they arrive again through /send.
async fn fetched_chains_judged_in_order(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let (alice, bob, room, pl0) = room_with_promoted_bob(&a, &bs).await;
    let (pl_id, pl, m_id, m) = forge_refused_pair(&a, &bs, &alice, &bob, &room, &pl0).await;
    let room_id = ruma::RoomId::parse(&room).unwrap();
    // The citing event first.
    let stored = a
        .services()
        .federation()
        .store_outliers(
            &room_id,
            &RoomVersionId::V12.rules().unwrap(),
            &[m.clone(), pl.clone()],
        )
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    for id in [&pl_id, &m_id] {
        let (st, _) = get_event(&a, &alice, &room, id).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let res = send_pdus(&bs, &a, "fetched-1", vec![pl, m]).await;
    for id in [&pl_id, &m_id] {
        let err = res[id]["error"].as_str().unwrap_or_default();
        assert!(err.contains("rejected earlier"), "{res}");
    }
    a.stop().await;
    bs.stop().await;
}

/// (d) An event citing an event of another room among its prev events is refused, although
/// the state after that event (the other room's) would allow it.
async fn foreign_prev_events_refused(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let other = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    join_through(&bs, &bob, &room, &a).await;
    join_through(&bs, &bob, &other, &a).await;
    let join = state_id(&a, &alice, &room, "m.room.member", &bob.user_id).await;
    let pl = state_id(&a, &alice, &room, "m.room.power_levels", "").await;
    let elsewhere = a.send_text(&alice, &other, "o1", "in the other room").await;
    let (id, ev) = forged(
        &bs,
        &room,
        &bob.user_id,
        msg("grafted"),
        &[&pl, &join],
        &elsewhere,
    );
    let res = send_pdus(&bs, &a, "foreign-1", vec![ev]).await;
    assert!(res[&id]["error"].is_string(), "{res}");
    assert!(!timeline_ids(&a, &alice, &room).await.contains(&id));
    let (st, _) = get_event(&a, &alice, &room, &id).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The room goes on: a message of bob on its own events is taken.
    let top = latest(&a, &alice, &room).await;
    let (ok_id, ok) = forged(&bs, &room, &bob.user_id, msg("fine"), &[&pl, &join], &top);
    let res = send_pdus(&bs, &a, "foreign-2", vec![ok]).await;
    assert!(res[&ok_id].get("error").is_none(), "{res}");
    let (st, _) = get_event(&a, &alice, &room, &ok_id).await;
    assert_eq!(st, StatusCode::OK);
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(
    auth_events_refuse,
    rejection_survives_restart,
    soft_failed_not_served,
    outliers_not_served,
    fetched_chains_judged_in_order,
    foreign_prev_events_refused,
);
