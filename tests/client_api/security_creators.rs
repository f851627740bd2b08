//! Tchap: externals never become creators of a room that is not direct (issue 14 item 5). In
//! room version 12 the creators — the create event's sender and its `additional_creators` —
//! have unlimited power; `restricted` forbids externals and `unrestricted` gives them power 0
//! only, so an external additional creator is refused at createRoom and upgrade, and a server
//! with the rules never lets one into such a room over federation. A DM may have one.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

const PW: &str = "Correct-Horse-42";
const EXTERNAL: &str = "@partner:externes.test";

/// `[tchap]` naming `agents` for `@agents.test` addresses and `externals` as the externals
/// server.
fn tchap(agents: &str, externals: &str) -> palabre::config::TchapConfig {
    palabre::config::TchapConfig {
        externals_servers: vec![externals.to_owned()],
        email_rules: vec![palabre::config::EmailRule {
            address: None,
            pattern: Some(r".*@agents\.test".into()),
            server: agents.to_owned(),
            requires_invite: false,
        }],
        ..Default::default()
    }
}

/// A user created as the command line does, then logged in.
async fn user(s: &TestServer, name: &str) -> User {
    s.services()
        .accounts()
        .create_user_cli(name, PW, false)
        .await
        .expect("create user");
    let (st, v) = s.login(password(name, PW)).await;
    assert_eq!(st, StatusCode::OK, "login {name}: {v}");
    User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    }
}

fn room_path(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", enc(room))
}

async fn state(s: &TestServer, u: &User, room: &str, kind_key: &str) -> (StatusCode, Value) {
    s.get(u, &room_path(room, &format!("state/{kind_key}")))
        .await
}

fn forbidden(r: &(StatusCode, Value), what: &str) {
    assert_eq!(r.0, StatusCode::FORBIDDEN, "{what}: {}", r.1);
    assert_eq!(r.1["errcode"], "M_FORBIDDEN", "{what}: {}", r.1);
}

async fn joined_rooms(s: &TestServer, u: &User) -> usize {
    let (_, v) = s.get(u, "/_matrix/client/v3/joined_rooms").await;
    v["joined_rooms"].as_array().map_or(0, Vec::len)
}

/// An agents server whose rules name `externes.test` as the externals server, and two agents.
async fn agents_server(b: Backend) -> (TestServer, User, User) {
    let s = TestServer::start_with(b, |c| {
        c.tchap = Some(tchap("localhost", "externes.test"));
    })
    .await;
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    (s, alice, bob)
}

/// createRoom on an agents server: an external additional creator is refused with 403 before
/// anything is built, unless the room is direct; agents still can be.
async fn security_creators_create_room(b: Backend) {
    let (s, alice, bob) = agents_server(b).await;
    let create = |body: Value| s.post(&alice, "/_matrix/client/v3/createRoom", body);

    // createRoom, v12: no external creator in a restricted or unrestricted room.
    forbidden(
        &create(json!({
            "room_version": "12",
            "creation_content": { "additional_creators": [EXTERNAL] },
        }))
        .await,
        "external creator of a restricted room",
    );
    forbidden(
        &create(json!({
            "room_version": "12",
            "creation_content": { "additional_creators": [bob.user_id, EXTERNAL] },
            "initial_state": [
                { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "unrestricted" } }
            ],
        }))
        .await,
        "external creator of an unrestricted room",
    );
    assert_eq!(joined_rooms(&s, &alice).await, 0, "a refused room was made");

    // An agent additional creator still works.
    let (st, v) = create(json!({
        "room_version": "12",
        "creation_content": { "additional_creators": [bob.user_id] },
    }))
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let room = v["room_id"].as_str().unwrap().to_owned();
    let (_, c) = state(&s, &alice, &room, "m.room.create/").await;
    assert_eq!(c["additional_creators"], json!([bob.user_id]), "{c}");

    // A DM may have its external member as a creator (the rules let DM members have power).
    let (st, v) = create(json!({
        "room_version": "12",
        "is_direct": true,
        "creation_content": { "additional_creators": [EXTERNAL] },
    }))
    .await;
    assert_eq!(st, StatusCode::OK, "external creator of a DM: {v}");
    let dm = v["room_id"].as_str().unwrap().to_owned();
    let (_, rule) = state(&s, &alice, &dm, "im.vector.room.access_rules/").await;
    assert_eq!(rule["rule"], "direct");
    s.stop().await;
}

/// Room upgrade to v12 on an agents server: an external additional creator is refused with 403
/// and the old room is left as it was, unless the room is direct; agents still can be.
async fn security_creators_upgrade(b: Backend) {
    let (s, alice, bob) = agents_server(b).await;
    let old = s.create_room(&alice, json!({ "room_version": "11" })).await;
    let upgrade = |room: &str, body: Value| {
        let path = room_path(room, "upgrade");
        let (s, alice) = (&s, &alice);
        async move { s.post(alice, &path, body).await }
    };
    forbidden(
        &upgrade(
            &old,
            json!({ "new_version": "12", "additional_creators": [EXTERNAL] }),
        )
        .await,
        "upgrade with an external creator",
    );
    let (st, v) = state(&s, &alice, &old, "m.room.tombstone/").await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "the refused upgrade went on: {v}"
    );
    let before = joined_rooms(&s, &alice).await;
    // An agent additional creator still works.
    let (st, v) = upgrade(
        &old,
        json!({ "new_version": "12", "additional_creators": [bob.user_id] }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new = v["replacement_room"].as_str().unwrap().to_owned();
    let (_, c) = state(&s, &alice, &new, "m.room.create/").await;
    assert_eq!(c["additional_creators"], json!([bob.user_id]), "{c}");
    assert_eq!(joined_rooms(&s, &alice).await, before + 1);
    // Upgrading an unrestricted room is refused the same way; a DM is not.
    let open = s
        .create_room(
            &alice,
            json!({ "room_version": "11", "initial_state": [
                { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "unrestricted" } }
            ] }),
        )
        .await;
    forbidden(
        &upgrade(
            &open,
            json!({ "new_version": "12", "additional_creators": [EXTERNAL] }),
        )
        .await,
        "upgrade of an unrestricted room with an external creator",
    );
    let old_dm = s
        .create_room(&alice, json!({ "room_version": "11", "is_direct": true }))
        .await;
    let (st, v) = upgrade(
        &old_dm,
        json!({ "new_version": "12", "additional_creators": [EXTERNAL] }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "upgrade of a DM: {v}");
    s.stop().await;
}

/// A: an agents server whose rules make E the externals server; B: a server without the Tchap
/// rules; E: the externals server (without them either: nothing there refuses anything).
async fn three_servers(b: Backend) -> (Vec<TestServer>, FedCert, User, User, User) {
    let (servers, cert) = servers_n(b, 3, |i, names, c| {
        if i == 0 {
            c.tchap = Some(tchap(&names[0], &names[2]));
        }
    })
    .await;
    let alice = user(&servers[0], "alice").await;
    let bob = user(&servers[1], "bob").await;
    let ext = user(&servers[2], "ext").await;
    (servers, cert, alice, bob, ext)
}

/// Waits until `u` on `s` reads a message `body` in `room`.
async fn wait_message(s: &TestServer, u: &User, room: &str, body: &str) {
    eventually(|| async {
        let (_, v) = s.get(u, &room_path(room, "messages?dir=b&limit=50")).await;
        v["chunk"]
            .as_array()
            .is_some_and(|c| c.iter().any(|e| e["content"]["body"] == body))
    })
    .await;
}

/// B makes a v12 room whose create event names E's external as additional creator and
/// invites A's agent, who joins.
async fn room_with_external_creator(
    servers: &[TestServer],
    alice: &User,
    bob: &User,
    ext: &User,
    initial_state: Value,
) -> String {
    let (a, bs) = (&servers[0], &servers[1]);
    let room = bs
        .create_room(
            bob,
            json!({
                "room_version": "12",
                "creation_content": { "additional_creators": [ext.user_id] },
                "initial_state": initial_state,
                "invite": [alice.user_id],
            }),
        )
        .await;
    eventually(|| async {
        let s = a.sync(alice, None, 0).await;
        s["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    a.join(alice, &room).await;
    room
}

/// The room is `unrestricted` from its creation on B (A took its state with the join): A
/// never lets the external creator in, neither his invite nor his join.
async fn security_creators_federated_member(b: Backend) {
    let (servers, _cert, alice, bob, ext) = three_servers(b).await;
    let (a, bs, e) = (&servers[0], &servers[1], &servers[2]);

    let rule = json!([
        { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "unrestricted" } }
    ]);
    let room = room_with_external_creator(&servers, &alice, &bob, &ext, rule).await;
    bs.invite(&bob, &room, &ext).await;
    eventually(|| async {
        let s = e.sync(&ext, None, 0).await;
        s["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    e.join(&ext, &room).await;
    let (_, m) = state(
        bs,
        &bob,
        &room,
        &format!("m.room.member/{}", enc(&ext.user_id)),
    )
    .await;
    assert_eq!(m["membership"], "join", "B let the external in: {m}");
    bs.send_text(&bob, &room, "t1", "after the creator").await;
    wait_message(a, &alice, &room, "after the creator").await;
    // A took neither his invite nor his join: he is no member there.
    let (st, m) = state(
        a,
        &alice,
        &room,
        &format!("m.room.member/{}", enc(&ext.user_id)),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "the external creator is a member on A: {m}"
    );
    let (_, members) = a.get(&alice, &room_path(&room, "joined_members")).await;
    assert!(members["joined"].get(&ext.user_id).is_none(), "{members}");

    for s in servers {
        s.stop().await;
    }
}

/// The room has no rule (restricted for A): A refuses the rule event B sends later to open it
/// to externals.
async fn security_creators_federated_rule(b: Backend) {
    let (servers, _cert, alice, bob, ext) = three_servers(b).await;
    let (a, bs) = (&servers[0], &servers[1]);
    let room2 = room_with_external_creator(&servers, &alice, &bob, &ext, json!([])).await;
    let (st, v) = bs
        .put(
            &bob,
            &room_path(&room2, "state/im.vector.room.access_rules/"),
            json!({ "rule": "unrestricted" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "B takes the rule: {v}");
    bs.send_text(&bob, &room2, "t2", "after the rule").await;
    wait_message(a, &alice, &room2, "after the rule").await;
    let (st, v) = state(a, &alice, &room2, "im.vector.room.access_rules/").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "A took the rule: {v}");

    for s in servers {
        s.stop().await;
    }
}

/// A server with the rules does not let its own external join a room that they refuse (here a
/// rule-less, so `restricted`, forum on B, which has no rules and takes the join): the join is
/// refused on E and E leaves again on B.
async fn security_remote_join_checked(b: Backend) {
    let (servers, _cert) = servers_n(b, 3, |i, names, c| {
        if i != 1 {
            c.tchap = Some(tchap(&names[0], &names[2]));
        }
    })
    .await;
    let (bs, e) = (&servers[1], &servers[2]);
    let bob = user(bs, "bob").await;
    let ext = user(e, "ext").await;
    let forum = bs
        .create_room(&bob, json!({"preset": "public_chat", "room_version": "12"}))
        .await;
    let (st, v) = e
        .post(
            &ext,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&forum),
                enc(&bs.name())
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "the external joined a restricted room: {v}"
    );
    let (st, _) = state(e, &ext, &forum, "m.room.create/").await;
    assert_ne!(st, StatusCode::OK, "E stored the room");
    eventually(|| async {
        let (_, m) = state(
            bs,
            &bob,
            &forum,
            &format!("m.room.member/{}", enc(&ext.user_id)),
        )
        .await;
        m["membership"] == "leave"
    })
    .await;
    for s in servers {
        s.stop().await;
    }
}

crate::both_backends!(
    security_remote_join_checked,
    security_creators_create_room,
    security_creators_upgrade,
    security_creators_federated_member,
    security_creators_federated_rule
);
