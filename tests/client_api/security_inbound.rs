//! Inbound federation requests (security review, issue 14): bodies capped per route and read
//! only once the `X-Matrix` header's origin and key are known, requests per origin bounded
//! (item 8); `/get_missing_events` walks the requested room only, typing EDUs obey the room's
//! server ACL (from item 14).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use ruma::{
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    ServerName,
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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
        .federation()
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

/// An `X-Matrix` header signed by `from` for `to` over `method path` and `body`.
fn x_matrix(from: &TestServer, to: &TestServer, method: Method, path: &str, body: &[u8]) -> String {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(body.to_vec())
        .unwrap();
    XMatrix::sign_http_request(
        &req,
        XMatrixSigningInput::new(
            from.services().server_name.clone(),
            to.services().server_name.clone(),
            &from.services().keys.pair,
        ),
    )
    .unwrap()
    .to_string()
}

/// Opens a connection to `to`'s plain listener and sends a request's head (with `headers`)
/// and the first `first` bytes of its body, leaving the rest unsent.
async fn start_request(to: &TestServer, head: &str, headers: &[String], first: &[u8]) -> TcpStream {
    let addr = to.base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{head} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tcp.flush().await.unwrap();
    tcp
}

/// The status line and whatever followed, if the server answers within `secs`.
async fn answer_within(tcp: &mut TcpStream, secs: u64) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got);
            // Head and (small) JSON body in.
            if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(secs), read).await;
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A transaction body larger than the route's cap is refused (413 M_TOO_LARGE) at once, from
/// its declared length or, without one, as soon as the cap is passed: the server does not
/// wait for the rest.
async fn oversized_bodies_refused_early(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |c| {
        c.inbound_federation.max_transaction_bytes = 64 * 1024;
    })
    .await;
    let path = "/_matrix/federation/v1/send/big1";
    let auth = x_matrix(&a, &bs, Method::PUT, path, b"{}");
    // Declared: 20 MiB, of which 1 KiB is sent.
    let mut tcp = start_request(
        &bs,
        &format!("PUT {path}"),
        &[
            format!("Authorization: {auth}"),
            "Content-Type: application/json".into(),
            format!("Content-Length: {}", 20 * 1024 * 1024),
        ],
        &[b' '; 1024],
    )
    .await;
    let answer = answer_within(&mut tcp, 5)
        .await
        .expect("no answer: the server waits for the whole body");
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");
    drop(tcp);

    // Chunked, no length: 100 KiB sent in chunks, never finished.
    let mut tcp = start_request(
        &bs,
        &format!("PUT {path}"),
        &[
            format!("Authorization: {auth}"),
            "Content-Type: application/json".into(),
            "Transfer-Encoding: chunked".into(),
        ],
        b"",
    )
    .await;
    let chunk = [b' '; 4096];
    for _ in 0..25 {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        if tcp.write_all(&c).await.is_err() {
            break;
        }
    }
    let answer = answer_within(&mut tcp, 5)
        .await
        .expect("no answer: the server waits for the whole body");
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");
    drop(tcp);

    // Within the cap, the same route works.
    send_edus(&a, &bs, "small1", json!([])).await;
    a.stop().await;
    bs.stop().await;
}

/// A request whose `X-Matrix` header names a key the origin does not have, or an origin that
/// is not allowed, is refused before its body is read: a body that never ends still gets an
/// immediate answer.
async fn bad_headers_refused_before_body(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let path = "/_matrix/federation/v1/send/bogus1";
    let unfinished = |auth: String| {
        vec![
            format!("Authorization: {auth}"),
            "Content-Type: application/json".into(),
            "Content-Length: 100000".into(),
        ]
    };
    let bogus = format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:bogus\",sig=\"AAAA\"",
        a.name(),
        bs.name()
    );
    let mut tcp = start_request(
        &bs,
        &format!("PUT {path}"),
        &unfinished(bogus),
        b"{\"pdus\"",
    )
    .await;
    let answer = answer_within(&mut tcp, 10)
        .await
        .expect("no answer: the server waits for the body of an unauthenticated request");
    assert_eq!(status_of(&answer), 401, "{answer}");
    drop(tcp);

    // For another destination.
    let elsewhere = format!(
        "X-Matrix origin=\"{}\",destination=\"other.example\",key=\"ed25519:x\",sig=\"AAAA\"",
        a.name()
    );
    let mut tcp = start_request(&bs, &format!("PUT {path}"), &unfinished(elsewhere), b"{").await;
    let answer = answer_within(&mut tcp, 10).await.expect("no answer");
    assert_eq!(status_of(&answer), 401, "{answer}");
    drop(tcp);
    a.stop().await;
    bs.stop().await;

    // An origin outside the allow-list.
    let (a, bs, _dir) = two_servers(b, |c| {
        c.federation.allow_list = Some(vec!["localhost:1".into()]);
    })
    .await;
    let auth = x_matrix(&a, &bs, Method::PUT, path, b"{}");
    let mut tcp = start_request(&bs, &format!("PUT {path}"), &unfinished(auth), b"{").await;
    let answer = answer_within(&mut tcp, 10).await.expect("no answer");
    assert_eq!(status_of(&answer), 403, "{answer}");
    drop(tcp);
    a.stop().await;
    bs.stop().await;
}

/// At most `max_concurrent_per_origin` requests of one origin are in hand at once; the next
/// gets 429 M_LIMIT_EXCEEDED, and slots come back when requests end.
async fn concurrent_requests_per_origin_bounded(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |c| {
        c.inbound_federation.max_concurrent_per_origin = 2;
    })
    .await;
    let bob = bs.register("bob").await;
    let profile = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&bob.user_id)
    );
    let (st, v) = fed(&a, &bs, Method::GET, &profile, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Transactions from A whose bodies never finish hold A's two slots. (A's own traffic to
    // B may hold a slot for a moment: a refused one is retried.)
    let slow = |i: usize| {
        let path = format!("/_matrix/federation/v1/send/slow{i}");
        let auth = x_matrix(&a, &bs, Method::PUT, &path, b"{}");
        let bs = &bs;
        async move {
            start_request(
                bs,
                &format!("PUT {path}"),
                &[
                    format!("Authorization: {auth}"),
                    "Content-Type: application/json".into(),
                    "Content-Length: 1000".into(),
                ],
                b"{",
            )
            .await
        }
    };
    let mut held = vec![];
    for i in 0..20 {
        if held.len() == 2 {
            break;
        }
        let mut tcp = slow(i).await;
        match answer_within(&mut tcp, 1).await {
            None => held.push(tcp),
            Some(answer) => {
                assert_eq!(status_of(&answer), 429, "{answer}");
                assert!(answer.contains("M_LIMIT_EXCEEDED"), "{answer}");
            }
        }
    }
    assert_eq!(held.len(), 2, "two slow requests are held");
    // A third slow one, and any other request of A, is refused while they last.
    let mut tcp = slow(100).await;
    let answer = answer_within(&mut tcp, 10)
        .await
        .expect("a third concurrent request of one origin is waiting to be served");
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert!(answer.contains("M_LIMIT_EXCEEDED"), "{answer}");
    let (st, v) = fed(&a, &bs, Method::GET, &profile, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED", "{v}");
    // Once A's slow requests are gone, A is served again.
    drop(held);
    eventually(|| async { fed(&a, &bs, Method::GET, &profile, None).await.0 == StatusCode::OK })
        .await;
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(
    typing_obeys_server_acl,
    missing_events_stay_in_room,
    oversized_bodies_refused_early,
    bad_headers_refused_before_body,
    concurrent_requests_per_origin_bounded
);
