use reqwest::StatusCode;
use serde_json::json;

use crate::common::{enc, timeline_bodies, Backend, TestServer};

crate::both_backends!(
    joined_visibility_hides_history,
    power_levels_forbid,
    membership_lifecycle,
    aliases_and_directory,
    concurrent_state_consistent,
    room_versions
);

async fn joined_visibility_hides_history(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}))
        .await;
    let early = s.send_text(&alice, &room, "e1", "before bob").await;
    s.invite(&alice, &room, &bob).await;
    s.join(&bob, &room).await;
    s.send_text(&alice, &room, "e2", "after bob").await;

    let sync = s.sync(&bob, None, 0).await;
    assert_eq!(timeline_bodies(&sync, &room), vec!["after bob"]);
    let (_, m) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    let bodies: Vec<&str> = m["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["after bob"]);
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&early)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/context/{}",
                enc(&room),
                enc(&early)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Alice still sees everything; a stranger sees nothing.
    let (_, m) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(
        m["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .count(),
        2
    );
    let eve = s.register("eve").await;
    let (st, v) = s
        .get(
            &eve,
            &format!("/_matrix/client/v3/rooms/{}/messages", enc(&room)),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, _) = s
        .get(
            &eve,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn power_levels_forbid(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    let (st, v) = s
        .put(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
            json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&room)),
            json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.power_levels",
                enc(&room)
            ),
            json!({"users": {bob.user_id.clone(): 100}}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The room admin may.
    let (st, v) = s
        .put(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
            json!({"name": "ours"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), // trailing slash: empty state key, as matrix-js-sdk writes it
        )
        .await;
    assert_eq!((st, v["name"].as_str()), (StatusCode::OK, Some("ours")));
    // A non-member cannot send.
    let dave = s.register("dave").await;
    let (st, _) = s
        .put(
            &dave,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/d1",
                enc(&room)
            ),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn membership_lifecycle(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    // Private room: bob cannot join uninvited.
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.invite(&alice, &room, &bob).await;
    let sync = s.sync(&bob, None, 0).await;
    assert!(sync["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member"));
    s.join(&bob, &room).await;
    let (_, jr) = s.get(&bob, "/_matrix/client/v3/joined_rooms").await;
    assert_eq!(jr["joined_rooms"], json!([room]));
    let (_, jm) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
        )
        .await;
    assert_eq!(jm["joined"].as_object().unwrap().len(), 2);
    let (_, members) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/members", enc(&room)),
        )
        .await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);

    // Kick: bob is out, sees the leave in sync.
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
            json!({"user_id": bob.user_id, "reason": "bye"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let after = s.sync(&bob, Some(&since), 0).await;
    assert!(after["rooms"]["leave"].get(&room).is_some(), "{after}");
    // Banned users cannot rejoin even when invited; unban lets them be invited again.
    s.invite(&alice, &room, &bob).await;
    let (st, _) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&room)),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/unban", enc(&room)),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.invite(&alice, &room, &bob).await;
    s.join(&bob, &room).await;
    // Leave then forget.
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, jr) = s.get(&bob, "/_matrix/client/v3/joined_rooms").await;
    assert_eq!(jr["joined_rooms"], json!([]));
    let with_leave = s
        .get(
            &bob,
            "/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22include_leave%22%3Atrue%7D%7D",
        )
        .await
        .1;
    assert!(
        with_leave["rooms"]["leave"].get(&room).is_none(),
        "forgotten rooms are not sent"
    );
    s.stop().await;
}

async fn aliases_and_directory(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_alias_name": "lobby", "visibility": "public"}),
        )
        .await;
    let (st, v) = s
        .get(
            &bob,
            "/_matrix/client/v3/directory/room/%23lobby%3Alocalhost",
        )
        .await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    let (st, v) = s
        .post(
            &alice,
            "/_matrix/client/v3/createRoom",
            json!({"room_alias_name": "lobby"}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_ROOM_IN_USE"))
    );
    // Join by alias.
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/join/%23lobby%3Alocalhost",
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    let (st, _) = s
        .put(
            &bob,
            "/_matrix/client/v3/directory/room/%23other%3Alocalhost",
            json!({"room_id": room}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)),
        )
        .await;
    assert_eq!(
        v["aliases"],
        json!(["#lobby:localhost", "#other:localhost"])
    );
    let carol = s.register("carol").await;
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/directory/room/%23other%3Alocalhost",
            Some(&carol.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/directory/room/%23other%3Alocalhost",
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .get(
            &bob,
            "/_matrix/client/v3/directory/room/%23other%3Alocalhost",
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (_, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/directory/list/room/{}", enc(&room)),
        )
        .await;
    assert_eq!(v["visibility"], "public");
    s.stop().await;
}

async fn concurrent_state_consistent(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"invite": [bob.user_id], "preset": "trusted_private_chat"}),
        )
        .await;
    s.join(&bob, &room).await;
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", enc(&room));
    let futs: Vec<_> = (0..20)
        .map(|i| {
            let (u, path) = (if i % 2 == 0 { &alice } else { &bob }, path.clone());
            let s = &s;
            async move {
                s.put(u, &path, json!({"topic": format!("topic {i}")}))
                    .await
                    .0
            }
        })
        .collect();
    let statuses = futures::future::join_all(futs).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    // The current state is the last topic event of the timeline, for every reader and every API.
    let (_, msgs) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(&room)
            ),
        )
        .await;
    let last = msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.topic")
        .unwrap()["content"]["topic"]
        .clone();
    let (_, a) = s.get(&alice, &path).await;
    let (_, bb) = s.get(&bob, &path).await;
    assert_eq!(a["topic"], last);
    assert_eq!(bb["topic"], last);
    let sync = s.sync(&bob, None, 0).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let from_sync = timeline
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.topic")
        .map(|e| e["content"]["topic"].clone());
    assert_eq!(from_sync, Some(last.clone()));
    // After a restart the state is the same (reloaded from the database).
    let (_, all) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    assert_eq!(
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.topic")
            .count(),
        1
    );
    s.stop().await;
}

async fn room_versions(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    for v in ["6", "9", "10", "11", "12"] {
        let room = s
            .create_room(
                &alice,
                json!({"room_version": v, "invite": [bob.user_id], "name": format!("v{v}")}),
            )
            .await;
        s.join(&bob, &room).await;
        s.send_text(&bob, &room, &format!("v{v}"), "hello").await;
        let (_, create) = s
            .get(
                &bob,
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.create",
                    enc(&room)
                ),
            )
            .await;
        assert_eq!(create["room_version"], v);
        if v == "12" {
            assert!(
                !room.contains(':'),
                "v12 room ids are the create event's hash: {room}"
            );
        } else {
            assert!(room.ends_with(":localhost"));
        }
    }
    // Same user, same content, same millisecond: still distinct v12 rooms.
    let bodies = (0..10).map(|_| {
        s.post(
            &alice,
            "/_matrix/client/v3/createRoom",
            json!({"preset": "public_chat", "name": "same"}),
        )
    });
    let mut ids: Vec<String> = futures::future::join_all(bodies)
        .await
        .into_iter()
        .map(|(st, v)| {
            assert_eq!(st, StatusCode::OK, "{v}");
            v["room_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    let (_, caps) = s.get(&alice, "/_matrix/client/v3/capabilities").await;
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "12");
    s.stop().await;
}
