//! Typing notifications and read receipts through /sync.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

fn ephemeral(sync: &Value, room: &str, kind: &str) -> Option<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
        .map(|e| e["content"].clone())
}

fn next(sync: &Value) -> String {
    sync["next_batch"].as_str().unwrap().to_owned()
}

async fn typing_times_out(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let t0 = next(&s.sync(&bob, None, 0).await);
    let path = |u: &User| {
        format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            enc(&room),
            enc(&u.user_id)
        )
    };
    let (st, _) = s.put(&alice, &path(&bob), json!({ "typing": true })).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "not for another user");
    let (st, v) = s
        .put(
            &alice,
            &path(&alice),
            json!({ "typing": true, "timeout": 400 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s1 = s.sync(&bob, Some(&t0), 5_000).await;
    assert_eq!(
        ephemeral(&s1, &room, "m.typing").unwrap()["user_ids"],
        json!([alice.user_id])
    );
    // Nothing else happens: the long-poll wakes when the typing times out.
    let s2 = s.sync(&bob, Some(&next(&s1)), 5_000).await;
    assert_eq!(
        ephemeral(&s2, &room, "m.typing").unwrap()["user_ids"],
        json!([])
    );
    // Explicit stop.
    s.put(
        &alice,
        &path(&alice),
        json!({ "typing": true, "timeout": 30000 }),
    )
    .await;
    let s3 = s.sync(&bob, Some(&next(&s2)), 5_000).await;
    assert_eq!(
        ephemeral(&s3, &room, "m.typing").unwrap()["user_ids"],
        json!([alice.user_id])
    );
    s.put(&alice, &path(&alice), json!({ "typing": false }))
        .await;
    let s4 = s.sync(&bob, Some(&next(&s3)), 5_000).await;
    assert_eq!(
        ephemeral(&s4, &room, "m.typing").unwrap()["user_ids"],
        json!([])
    );
    // Outsiders cannot type in the room.
    let carol = s.register("carol").await;
    let (st, _) = s
        .put(&carol, &path(&carol), json!({ "typing": true }))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn receipts_and_read_markers(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let e1 = s.send_text(&alice, &room, "t1", "one").await;
    let e2 = s.send_text(&alice, &room, "t2", "two").await;
    let a0 = next(&s.sync(&alice, None, 0).await);
    let receipt = |u: &User, kind: &str, ev: &str, body: Value| {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/receipt/{kind}/{}",
            enc(&room),
            enc(ev)
        );
        let s = &s;
        let u = u.clone();
        async move { s.post(&u, &path, body).await }
    };
    let (st, v) = receipt(&bob, "m.read", &e2, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s1 = s.sync(&alice, Some(&a0), 5_000).await;
    let r = ephemeral(&s1, &room, "m.receipt").expect("receipt delivered");
    assert!(r[&e2]["m.read"][&bob.user_id]["ts"].is_i64(), "{r}");
    // An older event does not move the receipt back.
    receipt(&bob, "m.read", &e1, json!({})).await;
    let (_, init) = s.get(&alice, "/_matrix/client/v3/sync").await;
    let r = ephemeral(&init, &room, "m.receipt").unwrap();
    assert!(
        r[&e2]["m.read"][&bob.user_id].is_object() && r.get(&e1).is_none(),
        "{r}"
    );

    // Private receipts stay with their owner; threaded receipts carry their thread.
    let b0 = next(&s.sync(&bob, None, 0).await);
    let a1 = next(&s1);
    receipt(&bob, "m.read.private", &e2, json!({})).await;
    receipt(&bob, "m.read", &e2, json!({ "thread_id": "main" })).await;
    let sb = s.sync(&bob, Some(&b0), 5_000).await;
    let rb = ephemeral(&sb, &room, "m.receipt").unwrap();
    assert!(rb[&e2]["m.read.private"][&bob.user_id].is_object(), "{rb}");
    let sa = s.sync(&alice, Some(&a1), 5_000).await;
    let ra = ephemeral(&sa, &room, "m.receipt").unwrap();
    assert!(ra[&e2].get("m.read.private").is_none(), "{ra}");
    assert_eq!(ra[&e2]["m.read"][&bob.user_id]["thread_id"], "main");

    // Read markers: m.fully_read lands in room account data.
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room)),
            json!({ "m.fully_read": e1, "m.read": e2 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, fr) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read",
                enc(&bob.user_id),
                enc(&room)
            ),
        )
        .await;
    assert_eq!(fr["event_id"], json!(e1));

    // Errors: unknown event, unknown type, not a member.
    assert_eq!(
        receipt(&bob, "m.read", "$nope", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        receipt(&bob, "m.weird", &e1, json!({})).await.0,
        StatusCode::BAD_REQUEST
    );
    let carol = s.register("carol").await;
    assert_eq!(
        receipt(&carol, "m.read", &e1, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    s.stop().await;
}

crate::both_backends!(typing_times_out, receipts_and_read_markers);
