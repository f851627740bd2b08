//! The room admin API through HTTP: the room list and details, members and state, blocks,
//! room deletion as a background job (members really removed, re-joins refused, the room
//! gone) and a deletion left unfinished by a killed process resumed by the next one; reports.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    room_list_and_details,
    block_and_delete,
    delete_v1_with_notice_room,
    reports_both_kinds,
    deletion_resumes_after_kill,
);

async fn room_list_and_details(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mut rooms = vec![];
    for (i, name) in ["Zeta", "alpha", "Mid"].iter().enumerate() {
        let r = s
            .create_room(&alice, json!({ "name": name, "preset": "public_chat", "room_alias_name": format!("room{i}") }))
            .await;
        rooms.push(r);
    }
    s.join(&bob, &rooms[1]).await;
    let empty = s.create_room(&bob, json!({})).await;
    s.post(
        &bob,
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&empty)),
        json!({}),
    )
    .await;
    // Walk the list two by two.
    let mut seen = vec![];
    let mut from = 0;
    loop {
        let (st, v) = s
            .get(
                &admin,
                &format!("/_synapse/admin/v1/rooms?limit=2&from={from}"),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["total_rooms"], 4, "{v}");
        for r in v["rooms"].as_array().unwrap() {
            seen.push(r.clone());
        }
        match v.get("next_batch") {
            Some(n) => from = n.as_i64().unwrap(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    // Ordered by name (the room without one first).
    let names: Vec<Value> = seen.iter().map(|r| r["name"].clone()).collect();
    assert_eq!(
        names,
        vec![Value::Null, json!("Mid"), json!("Zeta"), json!("alpha")]
    );
    let alpha = seen.iter().find(|r| r["name"] == "alpha").unwrap();
    assert_eq!(alpha["room_id"], rooms[1].as_str());
    assert_eq!(alpha["joined_members"], 2);
    assert_eq!(alpha["joined_local_members"], 2);
    assert_eq!(alpha["canonical_alias"], "#room1:localhost");
    assert_eq!(alpha["creator"], alice.user_id);
    assert_eq!(alpha["federatable"], true);
    for key in [
        "version",
        "encryption",
        "public",
        "join_rules",
        "guest_access",
        "history_visibility",
        "state_events",
    ] {
        assert!(alpha.get(key).is_some(), "{key}: {alpha}");
    }
    // Filters and orders.
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/rooms?search_term=ALPH")
        .await;
    assert_eq!(v["total_rooms"], 1, "{v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/rooms?search_term=%23room2")
        .await;
    assert_eq!(v["rooms"][0]["name"], "Mid", "by alias: {v}");
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/rooms?search_term={}", enc(&empty)),
        )
        .await;
    assert_eq!(v["total_rooms"], 1, "by room id: {v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/rooms?empty_rooms=true")
        .await;
    assert_eq!(v["total_rooms"], 1, "{v}");
    assert_eq!(v["rooms"][0]["room_id"], empty.as_str());
    let (_, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/rooms?order_by=joined_members&dir=b&limit=1",
        )
        .await;
    assert_eq!(v["rooms"][0]["room_id"], rooms[1].as_str(), "{v}");
    let (st, _) = s
        .get(&admin, "/_synapse/admin/v1/rooms?order_by=nonsense")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Details, members, state.
    let r = enc(&rooms[1]);
    let (st, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "alpha");
    assert_eq!(v["joined_local_devices"], 2, "{v}");
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}/members"))
        .await;
    assert_eq!(v["total"], 2, "{v}");
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(members.contains(&alice.user_id.as_str()) && members.contains(&bob.user_id.as_str()));
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}/state"))
        .await;
    let state = v["state"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{v}");
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "alpha"));
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/rooms/{r}/forward_extremities"),
        )
        .await;
    assert_eq!(v["count"], 1, "{v}");
    let (st, v) = s
        .get(&admin, "/_synapse/admin/v1/rooms/!nope:localhost")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    s.stop().await;
}

/// Waits for a deletion to end; returns its status entry.
async fn finished(s: &TestServer, admin: &User, delete_id: &str) -> Value {
    for _ in 0..200 {
        let (st, v) = s
            .get(
                admin,
                &format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}"),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["status"] == "complete" || v["status"] == "failed" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deletion {delete_id} did not finish");
}

async fn block_and_delete(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "doomed" }),
        )
        .await;
    s.join(&bob, &room).await;
    s.invite(&alice, &room, &carol).await;
    for i in 0..30 {
        s.send_text(&alice, &room, &format!("t{i}"), "spam").await;
    }
    let r = enc(&room);
    // Block: a plain block refuses new joins.
    let (st, v) = s
        .put(
            &admin,
            &format!("/_synapse/admin/v1/rooms/{r}/block"),
            json!({ "block": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}/block"))
        .await;
    assert_eq!(v, json!({ "block": true, "user_id": admin.user_id }));
    let (st, v) = s
        .post(&carol, &format!("/_matrix/client/v3/join/{r}"), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "blocked: {v}");
    s.put(
        &admin,
        &format!("/_synapse/admin/v1/rooms/{r}/block"),
        json!({ "block": false }),
    )
    .await;
    // Delete (v2): a job with a status.
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/rooms/{r}"),
            Some(&admin.token),
            Some(json!({ "block": true, "purge": true })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["delete_id"].as_str().expect("delete_id").to_owned();
    let done = finished(&s, &admin, &id).await;
    assert_eq!(done["status"], "complete", "{done}");
    let mut kicked: Vec<String> = done["shutdown_room"]["kicked_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    kicked.sort();
    let mut want = vec![
        alice.user_id.clone(),
        bob.user_id.clone(),
        carol.user_id.clone(),
    ];
    want.sort();
    assert_eq!(kicked, want, "{done}");
    assert_eq!(
        done["shutdown_room"]["local_aliases"],
        json!(["#doomed:localhost"])
    );
    // By room too.
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v2/rooms/{r}/delete_status"),
        )
        .await;
    assert_eq!(v["results"][0]["delete_id"], id.as_str(), "{v}");
    // The members are out: bob's sync says he left; nobody has the room any more.
    let sync = s.sync(&bob, Some(&since), 0).await;
    assert!(
        sync["rooms"]["leave"].get(&room).is_some() || sync["rooms"]["join"].get(&room).is_none(),
        "{sync}"
    );
    for u in [&alice, &bob] {
        let (_, v) = s.get(u, "/_matrix/client/v3/joined_rooms").await;
        assert_eq!(v["joined_rooms"], json!([]), "{v}");
    }
    // The room is gone from the server, its alias too, and it stays blocked.
    let (st, _) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = s.get(&admin, "/_synapse/admin/v1/rooms").await;
    assert_eq!(v["total_rooms"], 0, "{v}");
    let (st, _) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#doomed:localhost")
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s
        .post(&bob, &format!("/_matrix/client/v3/join/{r}"), json!({}))
        .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "re-join refused: {st} {v}"
    );
    let (st, v) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"),
        )
        .await;
    assert_ne!(st, StatusCode::OK, "no history left: {v}");
    // A second deletion of an unknown, unblocked room: 404.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/_synapse/admin/v2/rooms/!unknown:localhost",
            Some(&admin.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Creating rooms still works (the cache forgot the purged room only).
    let again = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &again, "after", "still fine").await;
    s.stop().await;
}

/// v1 answers with the result; members are moved to a notice room with the message.
async fn delete_v1_with_notice_room(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{}", enc(&room)),
            Some(&admin.token),
            Some(json!({ "new_room_user_id": admin.user_id, "message": "This room was closed.", "room_name": "Closed" })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kicked_users"], json!([alice.user_id]), "{v}");
    let new_room = v["new_room_id"].as_str().expect("new room").to_owned();
    let (_, j) = s.get(&alice, "/_matrix/client/v3/joined_rooms").await;
    assert_eq!(j["joined_rooms"], json!([new_room]), "{j}");
    let (_, m) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10",
                enc(&new_room)
            ),
        )
        .await;
    assert!(
        m["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "This room was closed."),
        "{m}"
    );
    s.stop().await;
}

async fn reports_both_kinds(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "name": "Reported", "preset": "public_chat" }),
        )
        .await;
    s.join(&bob, &room).await;
    let mut ids = vec![];
    for i in 0..5 {
        let ev = s.send_text(&alice, &room, &format!("r{i}"), "bad").await;
        let (st, v) = s
            .post(
                &bob,
                &format!(
                    "/_matrix/client/v3/rooms/{}/report/{}",
                    enc(&room),
                    enc(&ev)
                ),
                json!({ "reason": format!("no {i}"), "score": -100 }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        ids.push(ev);
    }
    // Walk: newest first by default, every report once.
    let mut seen = vec![];
    let mut from = 0;
    loop {
        let (st, v) = s
            .get(
                &admin,
                &format!("/_synapse/admin/v1/event_reports?limit=2&from={from}"),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["total"], 5);
        for r in v["event_reports"].as_array().unwrap() {
            assert_eq!(r["name"], "Reported", "{r}");
            assert_eq!(r["sender"], alice.user_id);
            assert_eq!(r["user_id"], bob.user_id);
            seen.push(r["event_id"].as_str().unwrap().to_owned());
        }
        match v.get("next_token") {
            Some(n) => from = n.as_i64().expect("next_token is an integer"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let (_, v) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/event_reports?event_sender_user_id={}",
                enc(&bob.user_id)
            ),
        )
        .await;
    assert_eq!(v["total"], 0, "bob sent none of them: {v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/event_reports?dir=f&limit=1")
        .await;
    let first = v["event_reports"][0]["id"].as_i64().unwrap();
    let (st, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/event_reports/{first}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["event_json"]["content"]["body"], "bad", "{v}");
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/event_reports/{first}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get(&admin, &format!("/_synapse/admin/v1/event_reports/{first}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get(&admin, "/_synapse/admin/v1/event_reports/abc").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // User reports from the client endpoint.
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/users/{}/report", enc(&alice.user_id)),
            json!({ "reason": "spammer" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/users/{}/report",
                enc("@ghost:localhost")
            ),
            json!({ "reason": "?" }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = s.get(&admin, "/_synapse/admin/v1/user_reports").await;
    assert_eq!(v["total"], 1, "{v}");
    let rep = &v["user_reports"][0];
    assert_eq!(rep["target_user_id"], alice.user_id);
    assert_eq!(rep["user_id"], bob.user_id);
    assert_eq!(rep["reason"], "spammer");
    let id = rep["id"].as_i64().unwrap();
    let (st, _) = s
        .get(&admin, &format!("/_synapse/admin/v1/user_reports/{id}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/user_reports/{id}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&admin, "/_synapse/admin/v1/user_reports").await;
    assert_eq!(v["total"], 0);
    s.stop().await;
}

/// A room deletion that a killed process left `active` is run to its end by the next process.
async fn deletion_resumes_after_kill(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(b, dir.path()).await;
    let port = free_port();
    let (proc, s, admin) = crate::crash::spawn_with_admin(dir.path(), &db, port).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    for i in 0..20 {
        s.send_text(&alice, &room, &format!("t{i}"), "x").await;
    }
    drop(proc); // SIGKILL
    let params = json!({ "block": true, "purge": true, "requester": "@boss:localhost" });
    crate::crash::leave_active_job(&db, "resumeme", "shutdown_and_purge_room", &room, params).await;
    let _proc = crate::crash::spawn(dir.path(), &db, port).await;
    let mut last = Value::Null;
    for _ in 0..200 {
        let (st, v) = s
            .get(&admin, "/_synapse/admin/v2/rooms/delete_status/resumeme")
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        last = v;
        if last["status"] == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "complete", "{last}");
    assert_eq!(
        last["shutdown_room"]["kicked_users"],
        json!(["@alice:localhost"]),
        "{last}"
    );
    assert!(last["progress"]["done"].as_i64().unwrap() > 20, "{last}");
    let (st, _) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{}", enc(&room)))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, j) = s.get(&alice, "/_matrix/client/v3/joined_rooms").await;
    assert_eq!(j["joined_rooms"], json!([]), "{j}");
}
