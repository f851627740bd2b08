use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{enc, timeline_bodies, Backend, TestServer};

crate::both_backends!(
    hundred_messages_paginate,
    incremental_sync_exact,
    long_poll_wakes_fast,
    txn_idempotent,
    redaction,
    redaction_paths_and_txn_scope
);

async fn hundred_messages_paginate(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"preset": "private_chat", "name": "chat"}))
        .await;
    s.invite(&alice, &room, &bob).await;
    s.join(&bob, &room).await;
    for i in 0..100 {
        let (u, n) = if i % 2 == 0 {
            (&alice, "a")
        } else {
            (&bob, "b")
        };
        s.send_text(u, &room, &format!("{n}{i}"), &format!("msg {i}"))
            .await;
    }
    // Paginate backwards 7 at a time from the end.
    let mut from: Option<String> = None;
    let mut seen = vec![];
    loop {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=7",
            enc(&room)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (st, v) = s.get(&bob, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for e in v["chunk"].as_array().unwrap() {
            if e["type"] == "m.room.message" {
                seen.push(e["content"]["body"].as_str().unwrap().to_owned());
            }
        }
        match v["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..100).rev().map(|i| format!("msg {i}")).collect();
    assert_eq!(seen, expected);
    // And forwards from the start.
    let (st, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let fwd: Vec<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(fwd.len(), 100);
    assert_eq!(fwd[0], "msg 0");
    assert_eq!(fwd[99], "msg 99");
    // Context around message 50.
    let fifty = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["body"] == "msg 50")
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, c) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/context/{}?limit=4",
                enc(&room),
                enc(&fifty)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["event"]["content"]["body"], "msg 50");
    assert_eq!(c["events_before"][0]["content"]["body"], "msg 49");
    assert_eq!(c["events_after"][0]["content"]["body"], "msg 51");
    let (st, e) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&fifty)
            ),
        )
        .await;
    assert_eq!(
        (st, e["content"]["body"].as_str()),
        (StatusCode::OK, Some("msg 50"))
    );
    s.stop().await;
}

async fn incremental_sync_exact(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    s.send_text(&alice, &room, "t0", "before").await;
    let first = s.sync(&bob, None, 0).await;
    assert_eq!(timeline_bodies(&first, &room), vec!["before"]);
    let since = first["next_batch"].as_str().unwrap().to_owned();
    for i in 0..5 {
        s.send_text(&alice, &room, &format!("n{i}"), &format!("new {i}"))
            .await;
    }
    let inc = s.sync(&bob, Some(&since), 0).await;
    assert_eq!(
        timeline_bodies(&inc, &room),
        (0..5).map(|i| format!("new {i}")).collect::<Vec<_>>()
    );
    assert_eq!(inc["rooms"]["join"][&room]["timeline"]["limited"], false);
    // Exactly the new events: nothing else, no state repeated.
    let evs = inc["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(evs.len(), 5);
    assert!(inc["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .is_empty());
    // Nothing new: an empty sync with the same token.
    let next = inc["next_batch"].as_str().unwrap().to_owned();
    let empty = s.sync(&bob, Some(&next), 0).await;
    assert!(
        empty["rooms"]["join"].as_object().unwrap().is_empty(),
        "{empty}"
    );
    // More than the limit: limited, with a prev_batch that paginates to the rest.
    for i in 0..15 {
        s.send_text(&alice, &room, &format!("m{i}"), &format!("many {i}"))
            .await;
    }
    let lim = s.sync(&bob, Some(&next), 0).await;
    let t = &lim["rooms"]["join"][&room]["timeline"];
    assert_eq!(t["limited"], true);
    assert_eq!(
        timeline_bodies(&lim, &room),
        (5..15).map(|i| format!("many {i}")).collect::<Vec<_>>()
    );
    let prev = t["prev_batch"].as_str().unwrap();
    let (_, older) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5&from={}",
                enc(&room),
                enc(prev)
            ),
        )
        .await;
    let bodies: Vec<&str> = older["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        vec!["many 4", "many 3", "many 2", "many 1", "many 0"]
    );
    // Account data arrives in sync.
    let (st, _) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.x",
                enc(&bob.user_id)
            ),
            json!({"a": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ad = s.sync(&bob, lim["next_batch"].as_str(), 0).await;
    assert_eq!(ad["account_data"]["events"][0]["type"], "org.example.x");
    let (_, got) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.x",
                enc(&bob.user_id)
            ),
        )
        .await;
    assert_eq!(got, json!({"a": 1}));
    s.stop().await;
}

async fn long_poll_wakes_fast(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    let mut best = Duration::MAX;
    for attempt in 0..3 {
        let since = s.sync(&bob, None, 0).await["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s2, bob2, since2) = (&s, bob.clone(), since.clone());
        let poll = async move {
            let v = s2.sync(&bob2, Some(&since2), 30_000).await;
            (Instant::now(), v)
        };
        let send = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.send_text(&alice, &room, &format!("lp{attempt}"), "wake up")
                .await;
            Instant::now()
        };
        let ((woke, v), sent) = tokio::join!(poll, send);
        assert_eq!(timeline_bodies(&v, &room), vec!["wake up"]);
        best = best.min(woke.saturating_duration_since(sent));
    }
    assert!(
        best < Duration::from_millis(100),
        "long-poll answered {best:?} after the send"
    );
    s.stop().await;
}

async fn txn_idempotent(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let a = s.send_text(&alice, &room, "same", "once").await;
    let b2 = s.send_text(&alice, &room, "same", "once").await;
    assert_eq!(a, b2);
    // Concurrent retries too.
    let futs: Vec<_> = (0..8)
        .map(|_| s.send_text(&alice, &room, "burst", "burst"))
        .collect();
    let ids = futures::future::join_all(futs).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let (_, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    let n = |body: &str| {
        v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["content"]["body"] == body)
            .count()
    };
    assert_eq!(n("once"), 1);
    assert_eq!(n("burst"), 1);
    // The sending device sees its transaction id.
    let ev = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["body"] == "once")
        .unwrap();
    assert_eq!(ev["unsigned"]["transaction_id"], "same");
    s.stop().await;
}

async fn redaction(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    let ev = s.send_text(&alice, &room, "r1", "secret").await;
    // Bob may not redact Alice's message (power 0 < redact 50).
    let (st, v) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/x1",
                enc(&room),
                enc(&ev)
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/x2",
                enc(&room),
                enc(&ev)
            ),
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, e) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&ev)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(e["content"], json!({}));
    assert_eq!(
        e["unsigned"]["redacted_because"]["content"]["reason"],
        "oops"
    );
    let (_, m) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5",
                enc(&room)
            ),
        )
        .await;
    let chunk: &Vec<Value> = m["chunk"].as_array().unwrap();
    assert!(chunk.iter().all(|e| e["content"]["body"] != "secret"));
    assert!(chunk
        .iter()
        .any(|e| e["type"] == "m.room.redaction" && e["redacts"] == ev.as_str()));
    s.stop().await;
}

/// Redactions only go through the checked path: not as state events, not across rooms, not in
/// initial_state; and transaction ids are scoped to their room and endpoint.
async fn redaction_paths_and_txn_scope(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mallory = s.register("mallory").await;
    let room = s.create_room(&alice, json!({})).await;
    let victim = s.send_text(&alice, &room, "v1", "keep me").await;
    let own = s.create_room(&mallory, json!({})).await;
    let (st, _) = s
        .put(
            &mallory,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.redaction/x",
                enc(&own)
            ),
            json!({"redacts": victim}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .put(
            &mallory,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.redaction/r1",
                enc(&own)
            ),
            json!({"redacts": victim}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "a redaction of another room's event"
    );
    let (st, _) = s
        .put(
            &mallory,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r2",
                enc(&own),
                enc(&victim)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post(&mallory, "/_matrix/client/v3/createRoom", json!({"initial_state": [{"type": "m.room.redaction", "state_key": "", "content": {"redacts": victim}}]}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, e) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&victim)
            ),
        )
        .await;
    assert_eq!(e["content"]["body"], "keep me");

    // The same txn id in two rooms makes two events.
    let room2 = s.create_room(&alice, json!({})).await;
    let a = s.send_text(&alice, &room, "same-txn", "in room 1").await;
    let b2 = s.send_text(&alice, &room2, "same-txn", "in room 2").await;
    assert_ne!(a, b2);
    let (_, e) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room2),
                enc(&b2)
            ),
        )
        .await;
    assert_eq!(e["content"]["body"], "in room 2");
    s.stop().await;
}
