//! Federation basics between two in-process servers over TLS: key fetching and the notary,
//! signed requests (X-Matrix) checked on arrival, the allow-list.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn keys_and_signed_requests(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.services().server_name.to_string();
    let b_name = bs.services().server_name.to_string();

    // B's notary fetches A's keys over TLS, checks them and adds its own signature.
    let (st, v) = a
        .call(
            reqwest::Method::GET,
            &format!("/_matrix/key/v2/query/{}", enc(&b_name)),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let entry = &v["server_keys"][0];
    assert_eq!(entry["server_name"], b_name);
    assert!(
        entry["signatures"][&b_name].is_object(),
        "B's own signature: {entry}"
    );
    assert!(
        entry["signatures"][&a_name].is_object(),
        "notary signature added: {entry}"
    );
    let (st, v) = a
        .call(
            reqwest::Method::POST,
            "/_matrix/key/v2/query",
            None,
            Some(json!({ "server_keys": { b_name.clone(): {} } })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["server_keys"][0]["server_name"], b_name);

    // A signed query from A to B: a remote profile.
    let bob = bs.register("bob").await;
    let (st, _) = bs
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&bob.user_id)
            ),
            json!({ "displayname": "Bob B." }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let alice = a.register("alice").await;
    let (st, v) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/profile/{}", enc(&bob.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["displayname"], "Bob B.");
    let (st, _) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/profile/{}",
                enc(&format!("@nobody:{b_name}"))
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Unsigned or badly signed requests are refused.
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&bob.user_id)
    );
    let (st, v) = bs.call(reqwest::Method::GET, &path, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let forged = format!(
        "X-Matrix origin=\"{a_name}\",destination=\"{b_name}\",key=\"ed25519:nope\",sig=\"AAAA\""
    );
    let resp = bs
        .http
        .get(format!("{}{path}", bs.base))
        .header("Authorization", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The same request properly signed by A passes.
    let signed = a
        .services()
        .federation()
        .federation_send(
            &ruma::ServerName::parse(&b_name).unwrap(),
            reqwest::Method::GET,
            &path,
            None,
        )
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::OK);
    a.stop().await;
    bs.stop().await;
}

async fn allow_list(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |c| {
        c.federation.allow_list = Some(vec!["localhost:1".into()]);
    })
    .await;
    let b_name = bs.services().server_name.to_string();
    let bob = bs.register("bob").await;
    let alice = a.register("alice").await;
    // B refuses A (not on its list): 403 through to the client.
    let (st, v) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/profile/{}", enc(&bob.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // And B never contacts A.
    let (st, v): (StatusCode, Value) = bs
        .get(
            &bob,
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let _ = b_name;
    a.stop().await;
    bs.stop().await;
}

/// Waits until `user`'s timeline in `room` (through /sync) contains `body`.
async fn sees(s: &TestServer, u: &User, room: &str, body: &str) {
    let mut since: Option<String> = None;
    for _ in 0..100 {
        let v = s.sync(u, since.as_deref(), 100).await;
        if timeline_bodies(&v, room).iter().any(|b| b == body) {
            return;
        }
        since = v["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{} never saw {body:?} in {room}", u.user_id);
}

async fn join_and_messages(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.services().server_name.to_string();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Interministériel" }),
        )
        .await;
    a.send_text(&alice, &room, "a1", "before bob").await;

    // Bob joins through A.
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "remote join: {v}");
    assert_eq!(v["room_id"], room);
    // B knows the room's state.
    let (st, name) = bs
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Interministériel");
    // A sees bob joined.
    eventually(|| async {
        let (_, m) = a
            .get(
                &alice,
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            )
            .await;
        m["joined"].get(&bob.user_id).is_some()
    })
    .await;

    // Messages both ways.
    a.send_text(&alice, &room, "a2", "bonjour bob").await;
    sees(&bs, &bob, &room, "bonjour bob").await;
    let from_bob = bs.send_text(&bob, &room, "b1", "bonjour alice").await;
    sees(&a, &alice, &room, "bonjour alice").await;

    // Typing and read receipts cross over as EDUs.
    let (st, _) = bs
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc(&bob.user_id)
            ),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ephemeral_has = |v: &Value, kind: &str, needle: &str| {
        v["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|evs| {
                evs.iter()
                    .any(|e| e["type"] == kind && e["content"].to_string().contains(needle))
            })
    };
    let mut since: Option<String> = None;
    let mut seen_typing = false;
    for _ in 0..50 {
        let v = a.sync(&alice, since.as_deref(), 200).await;
        if ephemeral_has(&v, "m.typing", &bob.user_id) {
            seen_typing = true;
            break;
        }
        since = v["next_batch"].as_str().map(str::to_owned);
    }
    assert!(seen_typing, "alice sees bob typing");
    let (st, _) = a
        .post(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&from_bob)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut seen_receipt = false;
    let mut since: Option<String> = None;
    for _ in 0..50 {
        let v = bs.sync(&bob, since.as_deref(), 200).await;
        if ephemeral_has(&v, "m.receipt", &alice.user_id) {
            seen_receipt = true;
            break;
        }
        since = v["next_batch"].as_str().map(str::to_owned);
    }
    assert!(seen_receipt, "bob sees alice's read receipt");
    a.stop().await;
    bs.stop().await;
}

async fn server_acl(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.services().server_name.to_string();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    // Both servers are named localhost:<port>; ACLs match the host only, so this bans B
    // (A is not subject to its own room's ACL for its own users).
    let (st, v) = a
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl/",
                enc(&room)
            ),
            json!({ "allow": ["*"], "deny": ["localhost"], "allow_ip_literals": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "the ACL keeps B out: {v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("ACL"),
        "{v}"
    );
    let (_, m) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
        )
        .await;
    assert!(m["joined"].get(&bob.user_id).is_none());
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(
    keys_and_signed_requests,
    allow_list,
    join_and_messages,
    server_acl
);
