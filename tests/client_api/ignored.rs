//! Ignoring users (`m.ignored_user_list`): their messages are hidden from whoever ignores them
//! (sync, /messages, /event) and notify nobody who ignores them; their state events are not
//! hidden, and their invites are not shown.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

crate::both_backends!(ignored_users_are_hidden);

async fn ignored_users_are_hidden(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    let ignore = |list: serde_json::Value| {
        let (s, bob) = (&s, &bob);
        async move {
            let (st, v) = s
                .put(
                    bob,
                    &format!(
                        "/_matrix/client/v3/user/{}/account_data/m.ignored_user_list",
                        enc(&bob.user_id)
                    ),
                    json!({ "ignored_users": list }),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    };
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    ignore(json!({ carol.user_id.clone(): {} })).await;
    let hidden = s.send_text(&carol, &room, "c1", "from carol").await;
    s.send_text(&alice, &room, "a1", "from alice").await;
    let (st, _) = s
        .put(
            &carol,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&carol.user_id)
            ),
            json!({ "membership": "join", "displayname": "Caro" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Bob's sync: alice's message, carol's new member event, not carol's message.
    let v = s.sync(&bob, Some(&since), 0).await;
    assert_eq!(timeline_bodies(&v, &room), vec!["from alice"]);
    // Nor is he notified of it: one notification, alice's.
    assert_eq!(
        v["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1,
        "{v}"
    );
    let events = v["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["content"]["displayname"] == "Caro"),
        "{v}"
    );
    // Alice, who ignores nobody, sees both.
    let (st, msgs) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let bodies = |m: &serde_json::Value| -> Vec<String> {
        m["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(bodies(&msgs), vec!["from alice", "from carol"]);
    // Bob's /messages and /event.
    let (st, msgs) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(bodies(&msgs), vec!["from alice"]);
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&hidden)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Carol's invite is not shown to Bob while he ignores her; it is once he stops.
    let other = s
        .create_room(&carol, json!({"preset": "private_chat"}))
        .await;
    s.invite(&carol, &other, &bob).await;
    let v = s.sync(&bob, None, 0).await;
    assert!(v["rooms"]["invite"].get(&other).is_none(), "{v}");
    ignore(json!({})).await;
    let v = s.sync(&bob, None, 0).await;
    assert!(v["rooms"]["invite"].get(&other).is_some(), "{v}");
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&hidden)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}
