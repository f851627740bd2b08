//! The room admin API that reads and repairs rooms as the server, through HTTP: messages and
//! context read by an admin who is not in the room, timestamp_to_event both ways, the
//! hierarchy of a private space, fetch_event (redacted when redacted), joining a user to a
//! public and to a private room, make_room_admin, and the deletion of forward extremities
//! (with the next event built on the one left); non-admins refused everywhere.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    messages_and_context,
    timestamp_and_fetch_event,
    hierarchy_of_private_space,
    join_public_and_private,
    make_room_admin_grants_power,
    delete_forward_extremities,
);

fn admin_path(room: &str, rest: &str) -> String {
    format!("/_synapse/admin/v1/rooms/{}/{rest}", enc(room))
}

/// A private room of alice's, with history shown to joined members only, and five messages.
async fn private_room(s: &TestServer, alice: &User) -> (String, Vec<String>) {
    let room = s
        .create_room(
            alice,
            json!({ "preset": "private_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "joined" } }] }),
        )
        .await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            s.send_text(alice, &room, &format!("t{i}"), &format!("m{i}"))
                .await,
        );
    }
    (room, ids)
}

fn ids_of(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn membership(s: &TestServer, reader: &User, room: &str, user: &str) -> Value {
    let (st, v) = s
        .get(
            reader,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(room),
                enc(user)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["membership"].clone()
}

async fn power_levels(s: &TestServer, admin: &User, room: &str) -> Value {
    let (st, v) = s.get(admin, &admin_path(room, "state")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.power_levels")
        .map(|e| e["content"].clone())
        .unwrap()
}

async fn messages_and_context(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (room, msgs) = private_room(&s, &alice).await;

    // Everything at once, backwards: the admin, not in the room, reads it all.
    let (st, all) = s
        .get(&admin, &admin_path(&room, "messages?dir=b&limit=1000"))
        .await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert!(all["start"].is_string(), "{all}");
    assert!(all.get("end").is_none(), "{all}");
    let mut all_ids = ids_of(&all["chunk"]);
    assert_eq!(
        all_ids[..5],
        msgs.iter().rev().cloned().collect::<Vec<_>>()[..]
    );
    assert_eq!(all["chunk"][0]["content"]["body"], "m4");
    assert!(all["chunk"][0].get("signatures").is_none());
    all_ids.reverse();
    assert_eq!(
        all_ids[0],
        all["chunk"].as_array().unwrap().last().unwrap()["event_id"]
    );

    // Forward (the default) two by two: every event once, in order.
    let mut seen = vec![];
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut path = admin_path(&room, "messages?limit=2");
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (st, v) = s.get(&admin, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        seen.extend(ids_of(&v["chunk"]));
        match v["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all_ids);

    // Backwards two by two too.
    let mut back = vec![];
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut path = admin_path(&room, "messages?dir=b&limit=2");
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (_, v) = s.get(&admin, &path).await;
        back.extend(ids_of(&v["chunk"]));
        match v["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    back.reverse();
    assert_eq!(back, all_ids);

    // `to`: forward from the start up to where the two last messages begin.
    let (_, last_two) = s
        .get(&admin, &admin_path(&room, "messages?dir=b&limit=2"))
        .await;
    let to = last_two["end"].as_str().unwrap();
    let (st, v) = s
        .get(
            &admin,
            &admin_path(&room, &format!("messages?limit=1000&to={}", enc(to))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let upto = ids_of(&v["chunk"]);
    assert_eq!(upto.last(), Some(&msgs[2]), "{v}");
    assert_eq!(upto[..], all_ids[..all_ids.len() - 2]);

    // A filter: messages only, with the senders' members.
    let filter = enc(r#"{"types":["m.room.message"],"lazy_load_members":true}"#);
    let (st, v) = s
        .get(
            &admin,
            &admin_path(&room, &format!("messages?dir=b&filter={filter}")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(ids_of(&v["chunk"]).len(), 5, "{v}");
    assert_eq!(v["state"][0]["state_key"], alice.user_id, "{v}");

    // Context around the third message.
    let (st, v) = s
        .get(
            &admin,
            &admin_path(&room, &format!("context/{}?limit=2", enc(&msgs[2]))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event"]["event_id"], msgs[2].as_str());
    assert_eq!(ids_of(&v["events_before"]), vec![msgs[1].clone()]);
    assert_eq!(ids_of(&v["events_after"]), vec![msgs[3].clone()]);
    assert!(v["start"].is_string() && v["end"].is_string(), "{v}");
    assert!(
        v["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "{v}"
    );

    // Errors.
    let (st, _) = s
        .get(&admin, &admin_path(&room, "context/$nope?limit=2"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s.get(&admin, &admin_path(&room, "messages?dir=x")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_INVALID_PARAM");
    let (st, v) = s.get(&admin, &admin_path(&room, "messages?from=zzz")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.get(&admin, &admin_path(&room, "messages?limit=x")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .get(&admin, &admin_path(&room, "messages?filter=notjson"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s
        .get(&admin, &admin_path("!nowhere:localhost", "messages"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s.get(&admin, &admin_path("not-a-room", "messages")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Non-admins.
    for path in [
        admin_path(&room, "messages"),
        admin_path(&room, &format!("context/{}", enc(&msgs[2]))),
    ] {
        let (st, v) = s.get(&bob, &path).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
        let (st, _) = s.call(Method::GET, &path, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    s.stop().await;
}

async fn timestamp_and_fetch_event(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (room, msgs) = private_room(&s, &alice).await;
    let far = palabre::util::now_ms() + 3_600_000;

    // Forward from 0: the room's first event; backward from the future: its last.
    let (st, v) = s
        .get(&admin, &admin_path(&room, "timestamp_to_event?ts=0&dir=f"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, first) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/fetch_event/{}",
                enc(v["event_id"].as_str().unwrap())
            ),
        )
        .await;
    assert_eq!(first["event"]["type"], "m.room.create", "{first}");
    assert_eq!(
        v["origin_server_ts"], first["event"]["origin_server_ts"],
        "{v}"
    );
    let (st, v) = s
        .get(
            &admin,
            &admin_path(&room, &format!("timestamp_to_event?ts={far}&dir=b")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event_id"], msgs[4].as_str());
    assert!(v["origin_server_ts"].as_i64().unwrap() > 0);
    // None that way.
    let (st, v) = s
        .get(
            &admin,
            &admin_path(&room, &format!("timestamp_to_event?ts={far}&dir=f")),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    let (st, _) = s
        .get(&admin, &admin_path(&room, "timestamp_to_event?ts=0&dir=b"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for bad in [
        "timestamp_to_event",
        "timestamp_to_event?ts=x",
        "timestamp_to_event?ts=1&dir=up",
    ] {
        let (st, v) = s.get(&admin, &admin_path(&room, bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    // fetch_event: the client format; redacted once redacted.
    let path = format!("/_synapse/admin/v1/fetch_event/{}", enc(&msgs[1]));
    let (st, v) = s.get(&admin, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event"]["event_id"], msgs[1].as_str());
    assert_eq!(v["event"]["room_id"], room.as_str());
    assert_eq!(v["event"]["sender"], alice.user_id);
    assert_eq!(v["event"]["content"]["body"], "m1");
    assert!(v["event"].get("prev_events").is_none(), "{v}");
    assert!(v["event"].get("signatures").is_none(), "{v}");
    let (st, r) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&msgs[1])
            ),
            json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v["event"]["content"], json!({}), "{v}");
    assert_eq!(
        v["event"]["unsigned"]["redacted_because"]["event_id"], r["event_id"],
        "{v}"
    );
    let (st, v) = s
        .get(&admin, "/_synapse/admin/v1/fetch_event/$unknown")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // Non-admins.
    for p in [admin_path(&room, "timestamp_to_event?ts=0"), path] {
        let (st, _) = s.get(&bob, &p).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{p}");
    }
    s.stop().await;
}

async fn hierarchy_of_private_space(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let space = s
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Space", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let mut children = vec![];
    for i in 0..2 {
        let child = s
            .create_room(
                &alice,
                json!({ "preset": "private_chat", "name": format!("c{i}") }),
            )
            .await;
        let (st, v) = s
            .put(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                    enc(&space),
                    enc(&child)
                ),
                json!({ "via": ["localhost"], "suggested": i == 0 }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        children.push(child);
    }
    // Bob, not a member, may not see it through the client API, the admin may.
    let (st, _) = s
        .get(
            &bob,
            &format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space)),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.get(&admin, &admin_path(&space, "hierarchy")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rooms = v["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 3, "{v}");
    assert_eq!(rooms[0]["room_id"], space.as_str());
    assert_eq!(rooms[0]["room_type"], "m.space");
    assert_eq!(rooms[0]["name"], "Space");
    assert_eq!(rooms[0]["children_state"].as_array().unwrap().len(), 2);
    assert!(rooms[1]["num_joined_members"].is_number(), "{v}");

    // Pages of one.
    let mut seen = vec![];
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let mut path = admin_path(&space, "hierarchy?limit=1");
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (st, v) = s.get(&admin, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for r in v["rooms"].as_array().unwrap() {
            seen.push(r["room_id"].as_str().unwrap().to_owned());
        }
        match v["next_batch"].as_str() {
            Some(n) => from = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], space);
    // max_depth and suggested_only.
    let (_, v) = s
        .get(&admin, &admin_path(&space, "hierarchy?max_depth=0"))
        .await;
    assert_eq!(v["rooms"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = s
        .get(&admin, &admin_path(&space, "hierarchy?suggested_only=true"))
        .await;
    let ids: Vec<&str> = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![space.as_str(), children[0].as_str()], "{v}");
    let (st, _) = s
        .get(
            &admin,
            &admin_path(&space, "hierarchy?suggested_only=maybe"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .get(&admin, &admin_path("!nowhere:localhost", "hierarchy"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get(&bob, &admin_path(&space, "hierarchy")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn join_public_and_private(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let public = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "pub" }),
        )
        .await;
    // A public room, by alias: no invite needed, the admin need not be in it.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/join/{}", enc("#pub:localhost")),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "room_id": public }));
    assert_eq!(membership(&s, &alice, &public, &bob.user_id).await, "join");

    // A private room: the admin must be in it with the power to invite.
    let (private, _) = private_room(&s, &alice).await;
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/join/{}", enc(&private)),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    s.invite(&alice, &private, &admin).await;
    s.join(&admin, &private).await;
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/join/{}", enc(&private)),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], private.as_str());
    assert_eq!(
        membership(&s, &alice, &private, &carol.user_id).await,
        "join"
    );
    // Carol really is in: she can send.
    s.send_text(&carol, &private, "c1", "hello").await;

    // Errors.
    let join = |room: &str| format!("/_synapse/admin/v1/join/{}", enc(room));
    let (st, v) = s
        .post(
            &admin,
            &join(&public),
            json!({ "user_id": "@x:elsewhere.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .post(
            &admin,
            &join("!nowhere:localhost"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .post(
            &admin,
            &join(&public),
            json!({ "user_id": "@ghost:localhost" }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .post(&admin, &join(&public), json!({ "user_id": "not a user" }))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.post(&admin, &join(&public), json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s
        .post(&bob, &join(&public), json!({ "user_id": carol.user_id }))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn make_room_admin_grants_power(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (private, _) = private_room(&s, &alice).await;

    // The admin himself (no user_id): granted the highest level, and invited.
    let (st, v) = s
        .post(&admin, &admin_path(&private, "make_room_admin"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({}));
    let pl = power_levels(&s, &admin, &private).await;
    assert_eq!(pl["users"][&admin.user_id], 100, "{pl}");
    assert_eq!(
        membership(&s, &alice, &private, &admin.user_id).await,
        "invite"
    );
    s.join(&admin, &private).await;
    // With that power he can change the room.
    let (st, v) = s
        .put(
            &admin,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                enc(&private)
            ),
            json!({ "name": "taken over" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Another user in a public room: the power, no invite (he may join).
    let public = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "pub" }),
        )
        .await;
    let (st, v) = s
        .post(
            &admin,
            &admin_path("#pub:localhost", "make_room_admin"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let pl = power_levels(&s, &admin, &public).await;
    assert_eq!(pl["users"][&bob.user_id], 100, "{pl}");
    let (st, _) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&public),
                enc(&bob.user_id)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // No local member left to do it: 400.
    let empty = s
        .create_room(&bob, json!({ "preset": "private_chat" }))
        .await;
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&empty)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(&admin, &admin_path(&empty, "make_room_admin"), json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s
        .post(
            &admin,
            &admin_path("!nowhere:localhost", "make_room_admin"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post(
            &admin,
            &admin_path(&public, "make_room_admin"),
            json!({ "user_id": "@x:elsewhere.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(&bob, &admin_path(&private, "make_room_admin"), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn delete_forward_extremities(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let (room, msgs) = private_room(&s, &alice).await;
    let svc = s.services();

    // A second extremity (as a fork received over federation would leave), then the room read
    // again from the database, as after a restart: its next event would have two prev events.
    let mut tx = svc.db.begin_write().await.unwrap();
    palabre::store::Db::insert_events(&mut tx.tx, &room, &[], &[], &[msgs[1].as_str()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let room_id = ruma::RoomId::parse(&room).unwrap();
    let mut guard = svc.rooms().lock_room(&room_id).await.unwrap();
    svc.rooms().forget_room_state(&room_id, &mut guard);
    drop(guard);
    drop(svc.rooms().lock_room(&room_id).await.unwrap());

    let path = admin_path(&room, "forward_extremities");
    let (st, v) = s.get(&admin, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2, "{v}");
    let bob = s.register("bob").await;
    let (st, _) = s.call(Method::DELETE, &path, Some(&bob.token), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, v) = s
        .call(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "deleted": 1 }));
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["results"][0]["event_id"], msgs[4].as_str(), "{v}");

    // The next event is built on the one left.
    let next = s.send_text(&alice, &room, "after", "after").await;
    let row = svc.db.get_event(&next).await.unwrap().unwrap();
    let pdu: Value = serde_json::from_str(&row.json).unwrap();
    assert_eq!(pdu["prev_events"], json!([msgs[4]]), "{pdu}");
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["results"][0]["event_id"], next.as_str());

    // Nothing more to delete; an unknown room.
    let (st, v) = s
        .call(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "deleted": 0 }));
    let (st, _) = s
        .call(
            Method::DELETE,
            &admin_path("!nowhere:localhost", "forward_extremities"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}
