//! Inbound federation requests (security review, issue 14): `/get_missing_events` walks the
//! requested room only, typing EDUs obey the room's server ACL.

use reqwest::{Method, StatusCode};
use ruma::ServerName;
use serde_json::{json, Value};

use crate::common::*;

/// `from` asks `to` (a signed federation request): the status and body.
async fn fed(
    from: &TestServer,
    to: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let to_name = ServerName::parse(to.name()).unwrap();
    match from
        .services()
        .federation_request(&to_name, method, path, body.as_ref())
        .await
    {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::from_u16(e.status.as_u16()).unwrap(),
            json!({ "errcode": e.errcode, "error": e.message }),
        ),
    }
}

async fn join_remote(bs: &TestServer, bob: &User, room: &str, via: &str) {
    let (st, v) = bs
        .post(
            bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(room),
                enc(via)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "remote join: {v}");
}

/// A transaction of EDUs only, from `from` to `to`.
async fn send_edus(from: &TestServer, to: &TestServer, txn: &str, edus: Value) {
    let path = format!("/_matrix/federation/v1/send/{txn}");
    let body = json!({
        "origin": from.name(),
        "origin_server_ts": palabre::util::now_ms(),
        "pdus": [],
        "edus": edus,
    });
    let (st, v) = fed(from, to, Method::PUT, &path, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "/send: {v}");
}

fn typing_users(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.typing")
        .flat_map(|e| {
            e["content"]["user_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// A typing EDU from a server the room's ACL bans is ignored, as receipts are.
async fn typing_obeys_server_acl(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    join_remote(&bs, &bob, &room, &a.name()).await;
    let typing = |on: bool| {
        json!([{ "edu_type": "m.typing",
                 "content": { "room_id": room, "user_id": bob.user_id, "typing": on } }])
    };
    // Allowed: bob's typing reaches alice.
    send_edus(&bs, &a, "t1", typing(true)).await;
    let v = a.sync(&alice, None, 0).await;
    assert!(typing_users(&v, &room).contains(&bob.user_id), "{v}");
    send_edus(&bs, &a, "t2", typing(false)).await;
    let v = a.sync(&alice, None, 0).await;
    assert!(!typing_users(&v, &room).contains(&bob.user_id), "{v}");

    // The ACL bans B (both servers are `localhost:<port>`): its typing EDUs are dropped.
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
    send_edus(&bs, &a, "t3", typing(true)).await;
    let v = a.sync(&alice, None, 0).await;
    assert!(
        !typing_users(&v, &room).contains(&bob.user_id),
        "a banned server's typing EDU was applied: {v}"
    );
    a.stop().await;
    bs.stop().await;
}

/// `/get_missing_events` for a room B is in never walks another room: event ids of another
/// room named in `latest_events` lead nowhere, and neither does an edge into another room
/// (which a forged PDU's `prev_events` can create; written directly in the DAG here).
async fn missing_events_stay_in_room(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let public = a
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    join_remote(&bs, &bob, &public, &a.name()).await;
    let pub1 = a.send_text(&alice, &public, "m1", "public one").await;
    let pub2 = a.send_text(&alice, &public, "m2", "public two").await;
    let secret = a
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let sec1 = a.send_text(&alice, &secret, "s1", "secret one").await;
    let sec2 = a.send_text(&alice, &secret, "s2", "secret two").await;
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", enc(&public));
    // The walk in the requested room works (the control). PDUs carry no event_id: compare
    // the bodies.
    let bodies = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    let (st, v) = fed(
        &bs,
        &a,
        Method::POST,
        &path,
        Some(json!({ "earliest_events": [], "latest_events": [pub2], "limit": 10 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(bodies(&v).contains(&"public one".to_owned()), "{v}");

    // A DAG edge from the secret room into the public one.
    sqlx::query("INSERT INTO event_edges (event_id, prev_event_id) VALUES ($1, $2)")
        .bind(&sec1)
        .bind(&pub1)
        .execute(&a.services().db.pool)
        .await
        .unwrap();
    // Starting from the secret room's latest event, the walk would go through the secret
    // room and come back into the public one: it must not start at all.
    let (st, v) = fed(
        &bs,
        &a,
        Method::POST,
        &path,
        Some(json!({ "earliest_events": [], "latest_events": [sec2], "limit": 10 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["events"], json!([]), "walked through another room: {v}");
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(typing_obeys_server_acl, missing_events_stay_in_room);
