//! Security review mends in the room core: stored event JSON is parsed, never grepped;
//! relations stay in their room; bundled aggregations obey history visibility; redactions need
//! the redact power whoever sends them.

use reqwest::{Method, StatusCode};
use ruma::{
    signatures::{hash_and_sign_event, reference_hash},
    CanonicalJsonValue, RoomVersionId, ServerName,
};
use serde_json::{json, Value};

use crate::common::*;

fn state_path(room: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/state/{kind}", enc(room))
}

/// A room that WAS world readable and no longer is must not be readable by non-members, even
/// though `unsigned.prev_content` of its current history visibility says `world_readable`.
async fn history_visibility_is_parsed(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let eve = s.register("eve").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    s.send_text(&alice, &room, "t1", "secret after").await;
    // While world readable, a non-member may read the state.
    let (st, _) = s
        .get(
            &eve,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .put(
            &alice,
            &state_path(&room, "m.room.history_visibility"),
            json!({"history_visibility": "shared"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for path in [
        format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/members", enc(&room)),
    ] {
        let (st, v) = s.get(&eve, &path).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    s.stop().await;
}

/// `contains_url` looks at the content's own `url` key: an avatar removal (whose
/// `prev_content` had a url) has none.
async fn contains_url_is_parsed(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, _) = s
        .put(
            &alice,
            &state_path(&room, "m.room.avatar"),
            json!({"url": "mxc://example.org/abc"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .put(&alice, &state_path(&room, "m.room.avatar"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let filter = enc(&json!({"contains_url": true}).to_string());
    let (st, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&filter={filter}",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let contents: Vec<&Value> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"])
        .collect();
    assert_eq!(
        contents,
        vec![&json!({"url": "mxc://example.org/abc"})],
        "{v}"
    );
    s.stop().await;
}

async fn send(
    s: &TestServer,
    u: &User,
    room: &str,
    txn: &str,
    content: Value,
) -> (StatusCode, Value) {
    s.put(
        u,
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            enc(room)
        ),
        content,
    )
    .await
}

fn thread_reply(root: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body,
           "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
}

fn edit(target: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": format!("* {body}"),
           "m.new_content": {"msgtype": "m.text", "body": body},
           "m.relates_to": {"rel_type": "m.replace", "event_id": target}})
}

/// The event `id` as `u` reads it through /event.
async fn event(s: &TestServer, u: &User, room: &str, id: &str) -> Value {
    let (st, v) = s
        .get(
            u,
            &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// A user may not attach a thread reply or an edit to an event of a room he is not in; the
/// room's members never see such text.
async fn relations_stay_in_their_room(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let eve = s.register("eve").await;
    let private = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let root = s.send_text(&alice, &private, "r", "the root").await;
    let own = s.create_room(&eve, json!({})).await;
    for (txn, content) in [
        ("t1", thread_reply(&root, "eve's reply")),
        ("t2", edit(&root, "eve's edit")),
    ] {
        let (st, v) = send(&s, &eve, &own, txn, content).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "Relations must be in the same room", "{v}");
    }
    // A relation to an event not known here is allowed (the parent may arrive later), and
    // counts only if that parent is in the same room.
    let (st, _) = send(&s, &eve, &own, "t3", thread_reply("$unknown", "x")).await;
    assert_eq!(st, StatusCode::OK);
    let v = event(&s, &alice, &private, &root).await;
    assert!(v["unsigned"].get("m.relations").is_none(), "{v}");
    s.stop().await;
}

/// The same over federation: B (which does not know A's private room) lets its user relate
/// to an event of it from a shared room; A keeps the event but never indexes the relation.
async fn remote_relations_stay_in_their_room(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let private = a
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let root = a.send_text(&alice, &private, "r", "the root").await;
    let shared = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&shared),
                enc(&a_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = send(&bs, &bob, &shared, "t1", thread_reply(&root, "bob's reply")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = send(
        &bs,
        &bob,
        &shared,
        "t2",
        json!({"msgtype": "m.text", "body": "marker"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let marker = v["event_id"].as_str().unwrap().to_owned();
    // Once A has the marker it has the reply before it.
    eventually(|| async {
        let (st, _) = a
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&shared),
                    enc(&marker)
                ),
            )
            .await;
        st == StatusCode::OK
    })
    .await;
    let v = event(&a, &alice, &private, &root).await;
    assert!(v["unsigned"].get("m.relations").is_none(), "{v}");
    let (st, v) = a
        .get(
            &alice,
            &format!("/_matrix/client/v1/rooms/{}/threads", enc(&private)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["chunk"], json!([]), "{v}");
    a.stop().await;
    bs.stop().await;
}

/// Bundled aggregations show a user who left only what he may still see: the thread's latest
/// reply and the edit from before he left, never the ones after.
async fn aggregations_obey_history_visibility(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
            ]}),
        )
        .await;
    s.join(&bob, &room).await;
    let root = s.send_text(&alice, &room, "r", "the root").await;
    let (st, v) = send(&s, &alice, &room, "t1", thread_reply(&root, "reply before")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = send(&s, &alice, &room, "e1", edit(&root, "edit before")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for i in 0..2 {
        let (st, v) = send(
            &s,
            &alice,
            &room,
            &format!("t2{i}"),
            thread_reply(&root, "secret reply"),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = send(&s, &alice, &room, "e2", edit(&root, "secret edit")).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let check = |v: &Value, what: &str| {
        let rel = &v["unsigned"]["m.relations"];
        assert_eq!(
            rel["m.thread"]["latest_event"]["content"]["body"], "reply before",
            "{what}: {v}"
        );
        assert_eq!(rel["m.thread"]["count"], 1, "{what}: {v}");
        assert_eq!(
            rel["m.replace"]["content"]["m.new_content"]["body"], "edit before",
            "{what}: {v}"
        );
        assert!(!v.to_string().contains("secret"), "{what}: {v}");
    };
    check(&event(&s, &bob, &room, &root).await, "/event");
    let (st, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/context/{}",
                enc(&room),
                enc(&root)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check(&v["event"], "/context");
    let (st, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let found = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == root.as_str());
    check(found.expect("root in /messages"), "/messages");
    let (st, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v1/rooms/{}/threads", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check(&v["chunk"][0], "/threads");
    // Alice, still joined, sees everything.
    let v = event(&s, &alice, &room, &root).await;
    assert_eq!(v["unsigned"]["m.relations"]["m.thread"]["count"], 3, "{v}");
    assert_eq!(
        v["unsigned"]["m.relations"]["m.thread"]["latest_event"]["content"]["body"],
        "secret reply"
    );
    s.stop().await;
}

/// A room on A with alice (power 100) and bob of B (power 0) joined, and a message of alice.
async fn shared_room(a: &TestServer, bs: &TestServer) -> (User, User, String, String) {
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a.name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let msg = a.send_text(&alice, &room, "m", "alice's words").await;
    // B has the message.
    eventually(|| async {
        let (st, _) = bs
            .get(
                &bob,
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&room),
                    enc(&msg)
                ),
            )
            .await;
        st == StatusCode::OK
    })
    .await;
    (alice, bob, room, msg)
}

/// A server whose power-0 user redacts someone else's message (B here skips its own check, as
/// a hostile server would): the redaction is accepted into the DAG but blanks nothing on A.
async fn remote_redactions_need_power(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let (alice, bob, room, msg) = shared_room(&a, &bs).await;
    let room_id = ruma::RoomId::parse(&room).unwrap();
    let target = ruma::EventId::parse(&msg).unwrap();
    let spec = palabre::services::rooms::EventSpec {
        kind: "m.room.redaction".into(),
        state_key: None,
        content: json!({"redacts": msg}),
        redacts: Some(target.clone()),
        bypass_policy: false,
    };
    let bob_id = ruma::UserId::parse(&bob.user_id).unwrap();
    let redaction = bs
        .services()
        .rooms()
        .submit(&room_id, bob_id, None, None, spec, None)
        .await
        .unwrap()
        .unwrap();
    // A receives the redaction ...
    eventually(|| async {
        let (st, _) = a
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&room),
                    enc(redaction.as_str())
                ),
            )
            .await;
        st == StatusCode::OK
    })
    .await;
    // ... and alice's message keeps its content.
    let v = event(&a, &alice, &room, &msg).await;
    assert_eq!(v["content"]["body"], "alice's words", "{v}");
    assert!(v["unsigned"].get("redacted_because").is_none(), "{v}");
    // Alice (power 100) may redact bob's message, and it is blanked on B too.
    let bobs = bs.send_text(&bob, &room, "b1", "bob's words").await;
    eventually(|| async {
        let (st, _) = a
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&room),
                    enc(&bobs)
                ),
            )
            .await;
        st == StatusCode::OK
    })
    .await;
    let (st, v) = a
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&bobs)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    eventually(|| async {
        let (_, v) = bs
            .get(
                &bob,
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&room),
                    enc(&bobs)
                ),
            )
            .await;
        v["content"] == json!({})
    })
    .await;
    a.stop().await;
    bs.stop().await;
}

/// A PDU of `room` built and signed by `s` for `sender`, on top of `prev`; `ev` holds its
/// `type` and `content`.
fn forged(
    s: &TestServer,
    room: &str,
    sender: &str,
    ev: Value,
    auth: &[String],
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

async fn push_pdus(from: &TestServer, to: &TestServer, txn: &str, pdus: Vec<Value>) {
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
    assert!(
        v["pdus"]
            .as_object()
            .is_none_or(|m| m.values().all(|r| r.get("error").is_none())),
        "{v}"
    );
}

/// A redaction that arrives before its target is judged when the target comes: bob's server
/// may redact bob's own message (same server), even received first.
async fn early_redactions_judged_on_arrival(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let (alice, bob, room, msg) = shared_room(&a, &bs).await;
    let (_, state) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    let id_of = |kind: &str, key: &str| -> String {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let auth = vec![
        id_of("m.room.power_levels", ""),
        id_of("m.room.member", &bob.user_id),
    ];
    // Both on top of alice's message (a fork: the redaction does not cite its target).
    let (x_id, x) = forged(
        &bs,
        &room,
        &bob.user_id,
        json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "regretted"}}),
        &auth,
        &msg,
    );
    let (_, r) = forged(
        &bs,
        &room,
        &bob.user_id,
        json!({"type": "m.room.redaction", "content": {"redacts": x_id}}),
        &auth,
        &msg,
    );
    push_pdus(&bs, &a, "early-1", vec![r]).await;
    push_pdus(&bs, &a, "early-2", vec![x]).await;
    let v = event(&a, &alice, &room, &x_id).await;
    assert_eq!(v["content"], json!({}), "{v}");
    assert!(v["unsigned"]["redacted_because"].is_object(), "{v}");
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(
    remote_redactions_need_power,
    early_redactions_judged_on_arrival,
    history_visibility_is_parsed,
    contains_url_is_parsed,
    relations_stay_in_their_room,
    remote_relations_stay_in_their_room,
    aggregations_obey_history_visibility,
);
