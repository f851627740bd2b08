//! Tchap rooms (TCHAP.md §3, §4, email invites of §7): access rules on local events and on
//! events received over federation, room defaults, forums, publishing, externals' limits, the
//! last-admin promotion, and email invites across an agents server and the externals server.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;
use crate::smtp_sink::SmtpSink;

const PW: &str = "Correct-Horse-42";

/// `[tchap]` for a federation where `names[0]` hosts `@agents.test` addresses and
/// `externals` (if any) is the externals server taking every other address.
fn tchap(names: &[String], externals: Option<usize>) -> palabre::config::TchapConfig {
    palabre::config::TchapConfig {
        externals_servers: externals.map(|i| names[i].clone()).into_iter().collect(),
        email_rules: vec![palabre::config::EmailRule {
            address: None,
            pattern: Some(r".*@agents\.test".into()),
            server: names[0].clone(),
            requires_invite: false,
        }],
        catch_all: externals.map(|i| palabre::config::EmailTarget {
            server: names[i].clone(),
            requires_invite: true,
        }),
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

async fn state_event(s: &TestServer, u: &User, room: &str, kind: &str) -> (StatusCode, Value) {
    s.get(u, &room_path(room, &format!("state/{kind}/"))).await
}

async fn put_state(
    s: &TestServer,
    u: &User,
    room: &str,
    kind: &str,
    content: Value,
) -> (StatusCode, Value) {
    s.put(u, &room_path(room, &format!("state/{kind}/")), content)
        .await
}

async fn set_rule(s: &TestServer, u: &User, room: &str, rule: &str) -> (StatusCode, Value) {
    put_state(
        s,
        u,
        room,
        "im.vector.room.access_rules",
        json!({ "rule": rule }),
    )
    .await
}

async fn try_create(s: &TestServer, u: &User, body: Value) -> (StatusCode, Value) {
    s.post(u, "/_matrix/client/v3/createRoom", body).await
}

async fn invite_status(s: &TestServer, u: &User, room: &str, target: &str) -> (StatusCode, Value) {
    s.post(u, &room_path(room, "invite"), json!({ "user_id": target }))
        .await
}

fn forbidden(r: &(StatusCode, Value), what: &str) {
    assert_eq!(r.0, StatusCode::FORBIDDEN, "{what}: {}", r.1);
    assert_eq!(r.1["errcode"], "M_FORBIDDEN", "{what}: {}", r.1);
}

async fn joined(s: &TestServer, u: &User, room: &str, who: &str) -> bool {
    let (st, v) = s
        .get(
            u,
            &room_path(room, &format!("state/m.room.member/{}", enc(who))),
        )
        .await;
    st == StatusCode::OK && v["membership"] == "join"
}

/// Defaults, createRoom checks, the §3 table and transitions, forums, publishing, externals'
/// limits and the last-admin promotion: A is an agents server, E the externals server.
async fn tchap_rooms_local(b: Backend) {
    let (servers, _cert) =
        servers_n(b, 2, |_, names, c| c.tchap = Some(tchap(names, Some(1)))).await;
    let (a, e) = (&servers[0], &servers[1]);
    let alice = user(a, "alice").await;
    let bob = user(a, "bob").await;
    let carol = user(a, "carol").await;
    let dave = user(a, "dave").await;
    let ext = user(e, "ext").await;

    // Defaults of a private room.
    let room = a.create_room(&alice, json!({})).await;
    let (_, rule) = state_event(a, &alice, &room, "im.vector.room.access_rules").await;
    assert_eq!(rule["rule"], "restricted");
    let (_, pl) = state_event(a, &alice, &room, "m.room.power_levels").await;
    assert_eq!(pl["state_default"], 100, "{pl}");
    assert_eq!(pl["invite"], 50);
    assert_eq!(pl["users_default"], 0);
    assert_eq!(pl["events"]["m.room.name"], 50);
    assert_eq!(pl["events"]["m.room.encryption"], 100);
    assert_eq!(pl["events"]["m.call.member"], 0);
    assert_eq!(pl["events"]["m.beacon_info"], 0);
    let (_, enc_ev) = state_event(a, &alice, &room, "m.room.encryption").await;
    assert_eq!(enc_ev["algorithm"], "m.megolm.v1.aes-sha2");
    let (_, hv) = state_event(a, &alice, &room, "m.room.history_visibility").await;
    assert_eq!(hv["history_visibility"], "invited");

    // createRoom: the rule must match is_direct; overrides keep their floors.
    let r = try_create(
        a,
        &alice,
        json!({ "is_direct": true, "invite": [bob.user_id], "initial_state": [
            { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "restricted" } }
        ] }),
    )
    .await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST, "{}", r.1);
    assert_eq!(r.1["errcode"], "M_INVALID_PARAM");
    let r = try_create(
        a,
        &alice,
        json!({ "initial_state": [
            { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "direct" } }
        ] }),
    )
    .await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST, "{}", r.1);
    forbidden(
        &try_create(
            a,
            &alice,
            json!({ "power_level_content_override": { "invite": 0 } }),
        )
        .await,
        "invite below 50",
    );
    forbidden(
        &try_create(
            a,
            &alice,
            json!({ "power_level_content_override": { "state_default": 50 } }),
        )
        .await,
        "state_default below 100",
    );
    // trusted_private_chat: invitees get 100.
    let trusted = a
        .create_room(
            &alice,
            json!({ "preset": "trusted_private_chat", "invite": [bob.user_id] }),
        )
        .await;
    let (_, pl) = state_event(a, &alice, &trusted, "m.room.power_levels").await;
    assert_eq!(pl["users"][&bob.user_id], 100, "{pl}");

    // direct: injected with is_direct; no name, no public join rule, no third member.
    let dm = a
        .create_room(
            &alice,
            json!({ "is_direct": true, "invite": [bob.user_id] }),
        )
        .await;
    let (_, rule) = state_event(a, &alice, &dm, "im.vector.room.access_rules").await;
    assert_eq!(rule["rule"], "direct");
    let (_, enc_ev) = state_event(a, &alice, &dm, "m.room.encryption").await;
    assert_eq!(enc_ev["algorithm"], "m.megolm.v1.aes-sha2");
    a.join(&bob, &dm).await;
    for kind in ["m.room.name", "m.room.topic", "m.room.avatar"] {
        let content = json!({ "name": "x", "topic": "x", "url": "mxc://a/b" });
        forbidden(&put_state(a, &alice, &dm, kind, content).await, kind);
    }
    forbidden(
        &put_state(
            a,
            &alice,
            &dm,
            "m.room.join_rules",
            json!({ "join_rule": "public" }),
        )
        .await,
        "public direct room",
    );
    forbidden(
        &invite_status(a, &alice, &dm, &carol.user_id).await,
        "third member",
    );
    // Transitions out of direct are refused.
    forbidden(
        &set_rule(a, &alice, &dm, "restricted").await,
        "direct → restricted",
    );
    assert_eq!(set_rule(a, &alice, &dm, "direct").await.0, StatusCode::OK);

    // restricted: no external invited; restricted → unrestricted only.
    forbidden(
        &invite_status(a, &alice, &room, &ext.user_id).await,
        "external into restricted",
    );
    assert_eq!(
        set_rule(a, &alice, &room, "restricted").await.0,
        StatusCode::OK
    );
    a.invite(&alice, &room, &bob).await;
    a.invite(&alice, &room, &carol).await;
    forbidden(
        &set_rule(a, &alice, &room, "direct").await,
        "3 members → direct",
    );
    forbidden(&set_rule(a, &alice, &room, "bogus").await, "unknown rule");
    assert_eq!(
        set_rule(a, &alice, &room, "unrestricted").await.0,
        StatusCode::OK
    );
    forbidden(
        &set_rule(a, &alice, &room, "restricted").await,
        "unrestricted → restricted",
    );
    forbidden(
        &set_rule(a, &alice, &room, "direct").await,
        "unrestricted → direct",
    );

    // unrestricted: externals only by invite, with power 0, users_default 0.
    let (_, mut pl) = state_event(a, &alice, &room, "m.room.power_levels").await;
    pl["users"][&ext.user_id] = json!(50);
    forbidden(
        &put_state(a, &alice, &room, "m.room.power_levels", pl.clone()).await,
        "power to an external",
    );
    pl["users"].as_object_mut().unwrap().remove(&ext.user_id);
    pl["users_default"] = json!(10);
    forbidden(
        &put_state(a, &alice, &room, "m.room.power_levels", pl).await,
        "users_default ≠ 0",
    );
    // Without an invite the external cannot join (the room's server refuses the join).
    let (st, v) = e
        .post(
            &ext,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a.name())
            ),
            json!({}),
        )
        .await;
    assert_ne!(st, StatusCode::OK, "external joined without invite: {v}");
    assert!(!joined(a, &alice, &room, &ext.user_id).await);
    a.invite(&alice, &room, &ext).await;
    eventually(|| async {
        let s = e.sync(&ext, None, 0).await;
        s["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    e.join(&ext, &room).await;
    assert!(joined(a, &alice, &room, &ext.user_id).await);

    // Publishing: only restricted rooms, never by externals, and a published room stays
    // restricted.
    let dir = |r: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(r));
    forbidden(
        &a.put(&alice, &dir(&room), json!({ "visibility": "public" }))
            .await,
        "publish unrestricted",
    );
    let listed = a.create_room(&alice, json!({})).await;
    let (st, v) = a
        .put(&alice, &dir(&listed), json!({ "visibility": "public" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    forbidden(
        &set_rule(a, &alice, &listed, "unrestricted").await,
        "published room leaves restricted",
    );
    forbidden(
        &try_create(
            a,
            &alice,
            json!({ "visibility": "public", "preset": "public_chat", "initial_state": [
                { "type": "im.vector.room.access_rules", "state_key": "", "content": { "rule": "unrestricted" } }
            ] }),
        )
        .await,
        "publish unrestricted at creation",
    );

    // Forums: public join rule, not encrypted, history shared; encryption refused; staying
    // public.
    let forum = a
        .create_room(
            &alice,
            json!({ "visibility": "public", "preset": "public_chat" }),
        )
        .await;
    let (st, _) = state_event(a, &alice, &forum, "m.room.encryption").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, hv) = state_event(a, &alice, &forum, "m.room.history_visibility").await;
    assert_eq!(hv["history_visibility"], "shared");
    let (_, jr) = state_event(a, &alice, &forum, "m.room.join_rules").await;
    assert_eq!(jr["join_rule"], "public");
    forbidden(
        &put_state(
            a,
            &alice,
            &forum,
            "m.room.encryption",
            json!({ "algorithm": "m.megolm.v1.aes-sha2" }),
        )
        .await,
        "encrypting a forum",
    );
    forbidden(
        &put_state(
            a,
            &alice,
            &forum,
            "m.room.join_rules",
            json!({ "join_rule": "invite" }),
        )
        .await,
        "unencrypted forum leaves public",
    );
    // An encrypted room may leave public.
    let pubenc = a
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let (st, v) = put_state(
        a,
        &alice,
        &pubenc,
        "m.room.join_rules",
        json!({ "join_rule": "public" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = put_state(
        a,
        &alice,
        &pubenc,
        "m.room.join_rules",
        json!({ "join_rule": "invite" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "encrypted room leaves public: {v}");

    // Externals: only a DM with one agent they already share a room with; never public.
    forbidden(
        &try_create(e, &ext, json!({})).await,
        "external creates a room",
    );
    forbidden(
        &try_create(
            e,
            &ext,
            json!({ "is_direct": true, "invite": [dave.user_id] }),
        )
        .await,
        "external DM with a stranger",
    );
    forbidden(
        &try_create(
            e,
            &ext,
            json!({ "is_direct": true, "invite": [alice.user_id], "visibility": "public" }),
        )
        .await,
        "external publishes",
    );
    let (st, v) = try_create(
        e,
        &ext,
        json!({ "is_direct": true, "invite": [alice.user_id] }),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "external DM with an agent they know: {v}"
    );

    // Last-admin promotion: alice (creator) leaves; bob (50) becomes 100, the external not.
    a.join(&bob, &room).await;
    let (_, mut pl) = state_event(a, &alice, &room, "m.room.power_levels").await;
    pl["users"][&bob.user_id] = json!(50);
    let (st, v) = put_state(a, &alice, &room, "m.room.power_levels", pl).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = a.post(&alice, &room_path(&room, "leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, pl) = state_event(a, &bob, &room, "m.room.power_levels").await;
    assert_eq!(pl["users"][&bob.user_id], 100, "{pl}");
    assert_eq!(
        pl["users"]
            .get(&ext.user_id)
            .and_then(Value::as_i64)
            .unwrap_or(0),
        0
    );
    // Only an external left with the last admin: nobody is promoted.
    let (st, v) = a.post(&bob, &room_path(&room, "leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, pl) = e
        .get(&ext, &room_path(&room, "state/m.room.power_levels/"))
        .await;
    assert_eq!(
        pl["users"]
            .get(&ext.user_id)
            .and_then(Value::as_i64)
            .unwrap_or(0),
        0,
        "{pl}"
    );

    for s in servers {
        s.stop().await;
    }
}

/// An event breaking A's rules, sent by a server without the Tchap rules (B): A rejects it
/// (never in A's state nor timeline) while legitimate events keep flowing.
async fn tchap_rooms_federated_rejection(b: Backend) {
    let (servers, _cert) = servers_n(b, 2, |i, names, c| {
        if i == 0 {
            c.tchap = Some(tchap(names, None));
        }
    })
    .await;
    let (a, bs) = (&servers[0], &servers[1]);
    let alice = user(a, "alice").await;
    let bob = user(bs, "bob").await;
    // As Tchap clients create DMs: both members get power 100.
    let dm = a
        .create_room(
            &alice,
            json!({ "is_direct": true, "preset": "trusted_private_chat", "invite": [bob.user_id] }),
        )
        .await;
    eventually(|| async {
        let s = bs.sync(&bob, None, 0).await;
        s["rooms"]["invite"].get(&dm).is_some()
    })
    .await;
    bs.join(&bob, &dm).await;
    // B has no Tchap rules: it takes the name and sends it to A.
    let (st, v) = put_state(bs, &bob, &dm, "m.room.name", json!({ "name": "Sneaky" })).await;
    assert_eq!(st, StatusCode::OK, "B takes the name: {v}");
    let name_id = v["event_id"].as_str().unwrap().to_owned();
    let (_, on_b) = state_event(bs, &bob, &dm, "m.room.name").await;
    assert_eq!(on_b["name"], "Sneaky");
    bs.send_text(&bob, &dm, "t1", "after the name").await;
    // The message after it reaches A ...
    eventually(|| async {
        let (_, v) = a
            .get(&alice, &room_path(&dm, "messages?dir=b&limit=50"))
            .await;
        v["chunk"]
            .as_array()
            .is_some_and(|c| c.iter().any(|e| e["content"]["body"] == "after the name"))
    })
    .await;
    // ... the name never does: not in A's state, not in A's timeline.
    let (st, v) = state_event(a, &alice, &dm, "m.room.name").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "rejected name in A's state: {v}");
    let (_, state) = a.get(&alice, &room_path(&dm, "state")).await;
    assert!(
        !state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name"),
        "{state}"
    );
    let (_, msgs) = a
        .get(&alice, &room_path(&dm, "messages?dir=b&limit=50"))
        .await;
    assert!(
        !msgs["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name"),
        "{msgs}"
    );
    let (st, v) = a
        .get(&alice, &room_path(&dm, &format!("event/{}", enc(&name_id))))
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "A serves the rejected event: {v}"
    );
    let s = a.sync(&alice, None, 0).await;
    let timeline = &s["rooms"]["join"][&dm]["timeline"]["events"];
    assert!(
        !timeline
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.room.name"),
        "{timeline}"
    );
    // m.federate false keeps a room on its server: no invite of B's user, no join from B.
    let local_only = a
        .create_room(
            &alice,
            json!({ "creation_content": { "m.federate": false } }),
        )
        .await;
    forbidden(
        &invite_status(a, &alice, &local_only, &bob.user_id).await,
        "remote invite into a non-federated room",
    );
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&local_only),
                enc(&a.name())
            ),
            json!({}),
        )
        .await;
    assert_ne!(st, StatusCode::OK, "joined a non-federated room: {v}");
    // And A's own events still reach B.
    a.send_text(&alice, &dm, "t2", "still talking").await;
    eventually(|| async {
        let (_, v) = bs
            .get(&bob, &room_path(&dm, "messages?dir=b&limit=50"))
            .await;
        v["chunk"]
            .as_array()
            .is_some_and(|c| c.iter().any(|e| e["content"]["body"] == "still talking"))
    })
    .await;
    for s in servers {
        s.stop().await;
    }
}

/// Email invites: A (agents) invites an address of the externals server C into an
/// unrestricted room: third-party invite state, an email, C's row; C binds the address to a
/// new user, who is invited and joins.
async fn tchap_rooms_email_invites(b: Backend) {
    let sink = SmtpSink::start().await;
    let (servers, _cert) = servers_n(b, 2, |i, names, c| {
        c.tchap = Some(tchap(names, Some(1)));
        if i == 0 {
            sink.configure(&mut c.email);
        }
    })
    .await;
    let (a, c) = (&servers[0], &servers[1]);
    let alice = user(a, "alice").await;
    let bob = user(a, "bob").await;
    let addr = "Partner@Example.com";
    let norm = "partner@example.com";
    let room = a
        .create_room(&alice, json!({ "name": "Projet commun" }))
        .await;
    let email_invite = |room: String| {
        let alice = alice.clone();
        async move {
            a.post(
                &alice,
                &room_path(&room, "invite"),
                json!({ "id_server": a.name(), "medium": "email", "address": addr }),
            )
            .await
        }
    };
    // restricted: an address of the externals server is refused.
    forbidden(
        &email_invite(room.clone()).await,
        "email invite into restricted",
    );
    // direct: a pending email invite would be a third member.
    let dm = a
        .create_room(
            &alice,
            json!({ "is_direct": true, "invite": [bob.user_id] }),
        )
        .await;
    forbidden(
        &email_invite(dm.clone()).await,
        "email invite into a full DM",
    );
    // Bad input.
    let (st, v) = a
        .post(
            &alice,
            &room_path(&room, "invite"),
            json!({ "id_server": a.name(), "medium": "email", "address": "not an address" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    assert_eq!(
        set_rule(a, &alice, &room, "unrestricted").await.0,
        StatusCode::OK
    );
    let (st, v) = email_invite(room.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The third-party invite state, with this server's key.
    let (_, state) = a.get(&alice, &room_path(&room, "state")).await;
    let tpi = state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.third_party_invite")
        .cloned()
        .expect("third-party invite in state");
    assert_eq!(tpi["content"]["display_name"], "pa…@example.com");
    assert_eq!(
        tpi["content"]["public_key"].as_str(),
        Some(a.services().keys.public_b64.as_str())
    );
    assert!(!tpi["content"]["display_name"]
        .as_str()
        .unwrap()
        .contains("partner"));
    // The email.
    let mail = sink.wait_for(norm, 0).await;
    assert!(mail.body.contains("Projet commun"), "{}", mail.body);
    // C, the address's server, keeps a row (origin A): its registration gate sees the invite.
    eventually(|| async {
        let rows = c.services().db.pending_email_invites(norm).await.unwrap();
        rows.iter()
            .any(|r| r.origin == a.name() && r.room_id == room)
    })
    .await;
    // An unrelated server may not announce invites (only peers are heard): A's own rows stay.
    let own = a.services().db.pending_email_invites(norm).await.unwrap();
    assert_eq!(own.len(), 1);

    // C binds the address to a new user: the invite follows, and the user can join.
    let partner = user(c, "partner").await;
    let pid = ruma::UserId::parse(partner.user_id.as_str()).unwrap();
    {
        let db = &c.services().db;
        let mut tx = db.begin_write().await.unwrap();
        let now = 1_700_000_000_000i64;
        assert!(palabre::store::Db::bind_threepid(
            &mut tx.tx,
            "email",
            norm,
            &partner.user_id,
            now,
            now
        )
        .await
        .unwrap());
        tx.commit().await.unwrap();
    }
    c.services().policy().email_bound(&pid, norm).await;
    eventually(|| async {
        let s = c.sync(&partner, None, 0).await;
        s["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    c.join(&partner, &room).await;
    assert!(joined(a, &alice, &room, &partner.user_id).await);
    // Resolved on both sides.
    assert!(a
        .services()
        .db
        .pending_email_invites(norm)
        .await
        .unwrap()
        .is_empty());
    assert!(c
        .services()
        .db
        .pending_email_invites(norm)
        .await
        .unwrap()
        .is_empty());
    // The member event carries the signed third-party block.
    let (_, m) = a
        .get(
            &alice,
            &room_path(
                &room,
                &format!("state/m.room.member/{}", enc(&partner.user_id)),
            ),
        )
        .await;
    assert_eq!(m["membership"], "join");

    // An address already bound: a plain invite.
    let room2 = a.create_room(&alice, json!({})).await;
    {
        let db = &a.services().db;
        let mut tx = db.begin_write().await.unwrap();
        palabre::store::Db::bind_threepid(
            &mut tx.tx,
            "email",
            "bob@agents.test",
            &bob.user_id,
            1,
            1,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let (st, v) = a
        .post(
            &alice,
            &room_path(&room2, "invite"),
            json!({ "id_server": a.name(), "medium": "email", "address": "Bob@agents.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, m) = a
        .get(
            &alice,
            &room_path(
                &room2,
                &format!("state/m.room.member/{}", enc(&bob.user_id)),
            ),
        )
        .await;
    assert_eq!(m["membership"], "invite", "{m}");

    // The federation endpoint refuses unsigned callers.
    let (st, _) = a
        .call(
            Method::POST,
            "/_matrix/federation/unstable/fr.gouv.tchap/email_invite",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    for s in servers {
        s.stop().await;
    }
}

/// With Tchap off, nothing of this applies.
async fn tchap_rooms_off(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, _) = state_event(&s, &alice, &room, "im.vector.room.access_rules").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, pl) = state_event(&s, &alice, &room, "m.room.power_levels").await;
    assert_eq!(pl["state_default"], 50);
    let (st, v) = put_state(
        &s,
        &alice,
        &room,
        "m.room.join_rules",
        json!({ "join_rule": "public" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &alice,
            &room_path(&room, "invite"),
            json!({ "id_server": "x", "medium": "email", "address": "a@b.fr" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    s.stop().await;
}

/// Email invitations are rate-limited per inviter (each one emails an outside address), and the
/// emails carry one short line of the user-chosen room name.
async fn tchap_email_invites_rate_limited(b: Backend) {
    let sink = SmtpSink::start().await;
    let s = TestServer::start_with(b, |c| {
        c.tchap = Some(tchap(&["localhost".to_owned()], None));
        c.rate_limits.email_invite = palabre::config::RateLimit {
            per_second: 0.001,
            burst: 2.0,
        };
        sink.configure(&mut c.email);
    })
    .await;
    let alice = user(&s, "alice").await;
    let long_name = format!("Projet\n{}", "x".repeat(300));
    let room = s.create_room(&alice, json!({ "name": long_name })).await;
    let invite = |n: usize| {
        let alice = alice.clone();
        let room = room.clone();
        let s = &s;
        async move {
            s.post(
                &alice,
                &room_path(&room, "invite"),
                json!({ "id_server": "localhost", "medium": "email", "address": format!("agent{n}@agents.test") }),
            )
            .await
        }
    };
    for n in 0..2 {
        let (st, v) = invite(n).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = invite(2).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    let mail = sink.wait_for("agent0@agents.test", 0).await;
    let line = mail
        .body
        .lines()
        .find(|l| l.contains("Projet"))
        .expect("the room name")
        .to_owned();
    assert!(line.chars().count() < 200, "{line}");
    assert_eq!(sink.mails_to("agent2@agents.test").len(), 0);
    s.stop().await;
}

crate::both_backends!(
    tchap_email_invites_rate_limited,
    tchap_rooms_local,
    tchap_rooms_federated_rejection,
    tchap_rooms_email_invites,
    tchap_rooms_off
);
