//! Knocking on local rooms (spec: Knocking, client API `POST /knock/{roomIdOrAlias}`): the join
//! rules that allow it, /sync `rooms.knock`, and invite / kick / ban / leave from a knock as the
//! auth rules say.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn knock(s: &TestServer, u: &User, room: &str) -> (StatusCode, Value) {
    s.post(
        u,
        &format!("/_matrix/client/v3/knock/{}", enc(room)),
        json!({ "reason": "let me in" }),
    )
    .await
}

async fn membership(s: &TestServer, viewer: &User, room: &str, user: &User) -> Value {
    let (st, v) = s
        .get(
            viewer,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(room),
                enc(&user.user_id)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["membership"].clone()
}

async fn local_knock_rules(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "room_version": "10",
                "name": "Knockable",
                "initial_state": [{
                    "type": "m.room.join_rules", "state_key": "",
                    "content": { "join_rule": "knock" },
                }],
            }),
        )
        .await;
    let first = s.sync(&bob, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // A knock room is not open: joining needs an invite.
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = knock(&s, &bob, &room).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], room.as_str());
    // Bob's /sync shows the knock with the room's stripped state and the knock itself.
    let v = s.sync(&bob, Some(&since), 0).await;
    let events = v["rooms"]["knock"][&room]["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knockable"),
        "{v}"
    );
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .unwrap_or_else(|| panic!("the knock in knock_state: {v}"));
    assert_eq!(own["content"]["membership"], "knock");
    assert_eq!(own["content"]["reason"], "let me in");
    assert!(
        own["event_id"].is_string(),
        "the knock is sent whole: {own}"
    );
    assert!(v["rooms"]["join"].get(&room).is_none(), "{v}");
    assert_eq!(membership(&s, &alice, &room, &bob).await, "knock");
    // Knocking again changes nothing; still no join.
    let (st, _) = knock(&s, &bob, &room).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Alice lets bob in: invite, then join.
    s.invite(&alice, &room, &bob).await;
    let v = s.sync(&bob, Some(&since), 0).await;
    assert!(v["rooms"]["invite"].get(&room).is_some(), "{v}");
    assert!(v["rooms"]["knock"].get(&room).is_none(), "{v}");
    s.join(&bob, &room).await;
    assert_eq!(membership(&s, &alice, &room, &bob).await, "join");
    // Knocking when joined is refused.
    let (st, _) = knock(&s, &bob, &room).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Carol knocks and is kicked; she may knock again; banned, she may not.
    assert_eq!(knock(&s, &carol, &room).await.0, StatusCode::OK);
    let (st, v) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(membership(&s, &alice, &room, &carol).await, "leave");
    assert_eq!(knock(&s, &carol, &room).await.0, StatusCode::OK);
    // The knocker withdraws her knock.
    let (st, v) = s
        .post(
            &carol,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(membership(&s, &alice, &room, &carol).await, "leave");
    let (st, v) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&room)),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(knock(&s, &carol, &room).await.0, StatusCode::FORBIDDEN);

    // Invite-only rooms and room versions before 7 refuse knocks.
    let closed = s
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "room_version": "10" }),
        )
        .await;
    let (st, v) = knock(&s, &carol, &closed).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let old = s
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "room_version": "6" }),
        )
        .await;
    let (st, v) = knock(&s, &carol, &old).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("version"),
        "{v}"
    );
    // An unknown room with no server to ask, a malformed id, a bad body.
    let (st, v) = knock(&s, &carol, "!NoSuchRoomAndNoServerToAskAboutItXXXXXXXXXX").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = knock(&s, &carol, "not-a-room").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .raw(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/knock/{}", enc(&room)),
            Some(&carol.token),
            "{not json",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_NOT_JSON", "{v}");
    s.stop().await;
}

crate::both_backends!(local_knock_rules);
