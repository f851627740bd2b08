//! Relations: edits, reactions, threads, references, bundled aggregations, /relations,
//! /threads, and redaction of related events.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn send(
    s: &TestServer,
    u: &User,
    room: &str,
    txn: &str,
    kind: &str,
    content: Value,
) -> String {
    let (st, v) = s
        .put(
            u,
            &format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room)),
            content,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "send: {v}");
    v["event_id"].as_str().unwrap().to_owned()
}

fn thread_reply(root: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                          "m.in_reply_to": { "event_id": root } },
    })
}

async fn get_event(s: &TestServer, u: &User, room: &str, id: &str) -> Value {
    let (st, v) = s
        .get(
            u,
            &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "event: {v}");
    v
}

async fn edits_and_reactions(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let original = s.send_text(&alice, &room, "t1", "helo").await;
    let edit = send(
        &s,
        &alice,
        &room,
        "t2",
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* hello",
            "m.new_content": { "msgtype": "m.text", "body": "hello" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    )
    .await;
    // An "edit" by someone else is not a valid replacement.
    send(
        &s,
        &bob,
        &room,
        "t3",
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* hijack",
            "m.new_content": { "msgtype": "m.text", "body": "hijack" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    )
    .await;
    let reaction = send(
        &s,
        &bob,
        &room,
        "t4",
        "m.reaction",
        json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": original, "key": "👍" },
        }),
    )
    .await;

    // The edit is bundled with the original, wherever it is served.
    let ev = get_event(&s, &bob, &room, &original).await;
    let replace = &ev["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], edit, "{ev}");
    assert_eq!(replace["content"]["m.new_content"]["body"], "hello");
    // The original content itself is left alone (spec v1.7+).
    assert_eq!(ev["content"]["body"], "helo");
    let sync = s.sync(&bob, None, 0).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let in_sync = timeline.iter().find(|e| e["event_id"] == original).unwrap();
    assert_eq!(
        in_sync["unsigned"]["m.relations"]["m.replace"]["event_id"],
        edit
    );
    let (st, msgs) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let in_msgs = msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == original)
        .unwrap();
    assert_eq!(
        in_msgs["unsigned"]["m.relations"]["m.replace"]["event_id"],
        edit
    );

    // Reactions are listed by /relations, filtered by type and event type.
    let (st, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}/m.annotation",
                enc(&room),
                enc(&original)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let chunk = v["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1, "{v}");
    assert_eq!(chunk[0]["event_id"], reaction);
    assert_eq!(chunk[0]["content"]["m.relates_to"]["key"], "👍");
    let (_, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}/m.replace/m.room.message",
                enc(&room),
                enc(&original)
            ),
        )
        .await;
    assert_eq!(
        v["chunk"].as_array().unwrap().len(),
        2,
        "both replace events are relations: {v}"
    );
    let (_, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}/m.annotation/m.room.message",
                enc(&room),
                enc(&original)
            ),
        )
        .await;
    assert!(v["chunk"].as_array().unwrap().is_empty(), "{v}");

    // Redacting the reaction removes it from /relations; the redacted event loses its content.
    let (st, _) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&reaction)
            ),
            json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}/m.annotation",
                enc(&room),
                enc(&original)
            ),
        )
        .await;
    assert!(v["chunk"].as_array().unwrap().is_empty(), "{v}");
    let red = get_event(&s, &bob, &room, &reaction).await;
    assert!(red["content"].as_object().unwrap().is_empty(), "{red}");
    assert_eq!(
        red["unsigned"]["redacted_because"]["content"]["reason"],
        "oops"
    );

    // Redacting the edit un-edits the original.
    let (st, _) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r2",
                enc(&room),
                enc(&edit)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ev = get_event(&s, &bob, &room, &original).await;
    assert!(ev["unsigned"]["m.relations"]["m.replace"].is_null(), "{ev}");

    // An unknown or invisible parent is 404; a bad direction is 400.
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}",
                enc(&room),
                enc("$nope")
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}?dir=x",
                enc(&room),
                enc(&original)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let carol = s.register("carol").await;
    let private = s
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let secret = s.send_text(&alice, &private, "p1", "secret").await;
    let (st, _) = s
        .get(
            &carol,
            &format!(
                "/_matrix/client/v1/rooms/{}/relations/{}",
                enc(&private),
                enc(&secret)
            ),
        )
        .await;
    assert!(
        st == StatusCode::NOT_FOUND || st == StatusCode::FORBIDDEN,
        "{st}"
    );
    s.stop().await;
}

async fn threads(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let root = s.send_text(&alice, &room, "r", "thread root").await;
    let other_root = s.send_text(&alice, &room, "o", "quiet root").await;
    let mut replies = vec![];
    for (i, u) in [&bob, &bob, &alice].iter().enumerate() {
        replies.push(
            send(
                &s,
                u,
                &room,
                &format!("t{i}"),
                "m.room.message",
                thread_reply(&root, &format!("reply {i}")),
            )
            .await,
        );
    }
    send(
        &s,
        &alice,
        &room,
        "o1",
        "m.room.message",
        thread_reply(&other_root, "lonely"),
    )
    .await;
    // A reaction to a reply: reached by /relations only with recurse.
    let deep = send(
        &s,
        &alice,
        &room,
        "x",
        "m.reaction",
        json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": replies[0], "key": "x" },
        }),
    )
    .await;

    let ev = get_event(&s, &bob, &room, &root).await;
    let thread = &ev["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 3, "{ev}");
    assert_eq!(thread["latest_event"]["event_id"], replies[2]);
    assert_eq!(thread["latest_event"]["content"]["body"], "reply 2");
    assert_eq!(thread["current_user_participated"], true);
    let carol = s.register("carol").await;
    s.join(&carol, &room).await;
    let ev = get_event(&s, &carol, &room, &root).await;
    assert_eq!(
        ev["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        false
    );

    // /relations pages through the replies, both directions, without repeats.
    let base = format!(
        "/_matrix/client/v1/rooms/{}/relations/{}/m.thread",
        enc(&room),
        enc(&root)
    );
    let (st, p1) = s.get(&bob, &format!("{base}?limit=2")).await;
    assert_eq!(st, StatusCode::OK, "{p1}");
    let ids1: Vec<&str> = p1["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids1,
        vec![replies[2].as_str(), replies[1].as_str()],
        "newest first"
    );
    let next = p1["next_batch"].as_str().expect("more replies");
    let (_, p2) = s
        .get(&bob, &format!("{base}?limit=2&from={}", enc(next)))
        .await;
    let ids2: Vec<&str> = p2["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids2, vec![replies[0].as_str()]);
    assert!(p2.get("next_batch").is_none(), "{p2}");
    let (_, f) = s.get(&bob, &format!("{base}?dir=f&limit=10")).await;
    let idsf: Vec<&str> = f["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(idsf, replies.iter().map(String::as_str).collect::<Vec<_>>());

    // recurse reaches the reaction to a reply.
    let all = format!(
        "/_matrix/client/v1/rooms/{}/relations/{}",
        enc(&room),
        enc(&root)
    );
    let (_, flat) = s.get(&bob, &all).await;
    assert!(!flat["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_id"] == deep));
    let (_, rec) = s.get(&bob, &format!("{all}?recurse=true")).await;
    assert!(
        rec["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_id"] == deep),
        "{rec}"
    );
    assert!(rec["recursion_depth"].as_i64().unwrap() >= 2, "{rec}");

    // /threads: by latest activity; participated filters.
    let (st, t) = s
        .get(
            &bob,
            &format!("/_matrix/client/v1/rooms/{}/threads", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let roots: Vec<&str> = t["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(roots, vec![other_root.as_str(), root.as_str()]);
    assert_eq!(
        t["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["count"],
        3
    );
    let (_, t) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/threads?include=participated",
                enc(&room)
            ),
        )
        .await;
    let roots: Vec<&str> = t["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        roots,
        vec![root.as_str()],
        "bob only replied in the first thread"
    );
    let (_, t) = s
        .get(
            &bob,
            &format!("/_matrix/client/v1/rooms/{}/threads?limit=1", enc(&room)),
        )
        .await;
    assert_eq!(t["chunk"].as_array().unwrap().len(), 1);
    let next = t["next_batch"].as_str().unwrap();
    let (_, t2) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/threads?limit=1&from={}",
                enc(&room),
                enc(next)
            ),
        )
        .await;
    assert_eq!(t2["chunk"][0]["event_id"], root);
    let (st, _) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v1/rooms/{}/threads?include=mine",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

async fn references(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let target = s.send_text(&alice, &room, "a", "verification start").await;
    let r1 = send(
        &s,
        &alice,
        &room,
        "b",
        "m.key.verification.done",
        json!({
            "m.relates_to": { "rel_type": "m.reference", "event_id": target },
        }),
    )
    .await;
    let ev = get_event(&s, &alice, &room, &target).await;
    assert_eq!(
        ev["unsigned"]["m.relations"]["m.reference"]["chunk"][0]["event_id"], r1,
        "{ev}"
    );
    s.stop().await;
}

crate::both_backends!(edits_and_reactions, threads, references);
