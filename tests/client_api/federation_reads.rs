//! Room reads served to other servers (`/event_auth`, `/backfill`, `/timestamp_to_event`,
//! `/hierarchy`, `/event`, `/state_ids`, `/get_missing_events`) with their refusals (a server
//! with no user in the room, a server banned by the room's ACL), history visibility for
//! servers, and backfill on the asking side (`/messages` on a server that joined late reaches the
//! room's creation).

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

/// The paths of every room read, for one room and one of its events.
fn read_paths(room: &str, event: &str) -> Vec<(Method, String, Option<Value>)> {
    let r = enc(room);
    let e = enc(event);
    vec![
        (
            Method::GET,
            format!("/_matrix/federation/v1/event_auth/{r}/{e}"),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/backfill/{r}?v={e}&limit=10"),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/timestamp_to_event/{r}?ts=0&dir=f"),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/state_ids/{r}?event_id={e}"),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/state/{r}?event_id={e}"),
            None,
        ),
        (
            Method::POST,
            format!("/_matrix/federation/v1/get_missing_events/{r}"),
            Some(json!({ "earliest_events": [], "latest_events": [event], "limit": 10 })),
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/event/{e}"),
            None,
        ),
    ]
}

async fn served_reads_and_refusals(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Lectures" }),
        )
        .await;
    let mut sent = vec![];
    for i in 0..5 {
        sent.push(
            a.send_text(&alice, &room, &format!("t{i}"), &format!("m{i}"))
                .await,
        );
    }
    let last = sent.last().unwrap().clone();

    // B has no user in the room: every read is refused.
    for (m, path, body) in read_paths(&room, &last) {
        let (st, v) = fed(&bs, &a, m, &path, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    // An unknown room is 404.
    let (st, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts=0&dir=f",
            enc(&format!("!nothere:{a_name}"))
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    join_remote(&bs, &bob, &room, &a_name).await;
    for (m, path, body) in read_paths(&room, &last) {
        let (st, v) = fed(&bs, &a, m, &path, body).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
    }

    // /event_auth: the auth chain of a message (create, power levels, the sender's join).
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&room),
            enc(&last)
        ),
        None,
    )
    .await;
    let types: Vec<&str> = v["auth_chain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in ["m.room.create", "m.room.power_levels", "m.room.member"] {
        assert!(types.contains(&t), "{t} in the auth chain: {v}");
    }
    assert!(!types.contains(&"m.room.message"), "{v}");
    // Unknown event: 404; bad direction: 400.
    let (st, _) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&room),
            enc("$nope")
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts=0&dir=x",
            enc(&room)
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // /backfill: from the last message, deepest first, `v` included, `limit` honoured.
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=3",
            enc(&room),
            enc(&last)
        ),
        None,
    )
    .await;
    let pdus = v["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 3, "{v}");
    let bodies: Vec<&str> = pdus
        .iter()
        .filter_map(|p| p["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["m4", "m3", "m2"], "{v}");
    let depths: Vec<i64> = pdus.iter().map(|p| p["depth"].as_i64().unwrap()).collect();
    assert!(depths.windows(2).all(|w| w[0] > w[1]), "{depths:?}");
    // A huge limit is capped, and the walk ends at the create event.
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=100000",
            enc(&room),
            enc(&last)
        ),
        None,
    )
    .await;
    let pdus = v["pdus"].as_array().unwrap();
    assert!(pdus.len() <= 100);
    assert_eq!(pdus.last().unwrap()["type"], "m.room.create", "{v}");
    // No `limit`: 400.
    let (st, _) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/backfill/{}?v={}",
            enc(&room),
            enc(&last)
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // /timestamp_to_event both ways.
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts=0&dir=f",
            enc(&room)
        ),
        None,
    )
    .await;
    assert!(
        v["event_id"].is_string() && v["origin_server_ts"].is_i64(),
        "{v}"
    );
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts={}&dir=b",
            enc(&room),
            i64::MAX / 2
        ),
        None,
    )
    .await;
    assert!(v["event_id"].is_string(), "{v}");
    let (st, _) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts={}&dir=f",
            enc(&room),
            i64::MAX / 2
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing after the end of time");

    // The room's ACL bans B (both servers are `localhost:<port>`): every read is refused, joined
    // user or not.
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
    for (m, path, body) in read_paths(&room, &last) {
        let (st, v) = fed(&bs, &a, m, &path, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains("ACL"),
            "{path}: {v}"
        );
    }
    let (st, _) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
            enc(&room),
            enc(&bob.user_id)
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    a.stop().await;
    bs.stop().await;
}

/// History visibility for servers: in a `joined` room, what was sent before B's user joined
/// reaches B redacted (/event, /backfill) or not at all (/get_missing_events).
async fn history_visibility_for_servers(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility", "state_key": "",
                    "content": { "history_visibility": "joined" }
                }]
            }),
        )
        .await;
    let secret = a.send_text(&alice, &room, "s", "before bob").await;
    join_remote(&bs, &bob, &room, &a_name).await;
    let after = a.send_text(&alice, &room, "p", "after bob").await;

    let (st, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!("/_matrix/federation/v1/event/{}", enc(&secret)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let pdu = &v["pdus"][0];
    assert_eq!(pdu["type"], "m.room.message");
    assert_eq!(pdu["content"], json!({}), "redacted: {v}");
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!("/_matrix/federation/v1/event/{}", enc(&after)),
        None,
    )
    .await;
    assert_eq!(v["pdus"][0]["content"]["body"], "after bob", "{v}");

    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/backfill/{}?v={}&limit=100",
            enc(&room),
            enc(&after)
        ),
        None,
    )
    .await;
    let messages: Vec<&Value> = v["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "m.room.message")
        .collect();
    assert_eq!(messages.len(), 2, "{v}");
    assert_eq!(messages[0]["content"]["body"], "after bob");
    assert_eq!(
        messages[1]["content"],
        json!({}),
        "redacted in backfill: {v}"
    );

    let (_, v) = fed(
        &bs,
        &a,
        Method::POST,
        &format!("/_matrix/federation/v1/get_missing_events/{}", enc(&room)),
        Some(json!({ "earliest_events": [], "latest_events": [after], "limit": 50 })),
    )
    .await;
    let events = v["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{v}");
    assert!(
        !events.iter().any(|e| e["type"] == "m.room.message"),
        "the only earlier message is hidden: {v}"
    );

    // B's own client sees no more than its server was given.
    let (st, v) = bs
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = v.to_string();
    assert!(!text.contains("before bob"), "{v}");
    a.stop().await;
    bs.stop().await;
}

/// A room with history on A; B's user joins, and /messages on B pages back to the room's
/// creation (backfill), in order, each message once; a second pass asks A nothing new.
async fn backfill_on_messages(b: Backend) {
    const N: usize = 130;
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Archives" }),
        )
        .await;
    let mut sent = vec![];
    for i in 0..N {
        sent.push(format!("old {i:03}"));
        a.send_text(&alice, &room, &format!("t{i}"), &sent[i]).await;
    }
    join_remote(&bs, &bob, &room, &a_name).await;

    let page = |from: Option<String>| {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=40",
            enc(&room)
        );
        if let Some(f) = from {
            path.push_str(&format!("&from={}", enc(&f)));
        }
        path
    };
    let mut seen: Vec<String> = vec![];
    let mut types: Vec<String> = vec![];
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let (st, v) = bs.get(&bob, &page(from.clone())).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for e in v["chunk"].as_array().unwrap() {
            types.push(e["type"].as_str().unwrap_or_default().to_owned());
            if e["type"] == "m.room.message" {
                seen.push(e["content"]["body"].as_str().unwrap().to_owned());
            }
        }
        match v["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    seen.reverse();
    assert_eq!(seen, sent, "every old message once, in order");
    assert_eq!(
        types.last().map(String::as_str),
        Some("m.room.create"),
        "down to the creation"
    );

    // The history is readable again without asking A (the room start is recorded).
    a.stop().await;
    let mut again = 0;
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let (st, v) = bs.get(&bob, &page(from.clone())).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        again += v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .count();
        match v["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    assert_eq!(again, N);
    bs.stop().await;
}

/// `/hierarchy` over federation: a public space with a public child and an invite-only child;
/// the private one is only named as inaccessible; a private root is 404.
async fn hierarchy_over_federation(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let public = a
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Public child" }),
        )
        .await;
    let private = a
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Private child" }),
        )
        .await;
    let space = a
        .create_room(
            &alice,
            json!({
                "preset": "public_chat", "name": "Space",
                "creation_content": { "type": "m.space" },
                "initial_state": [
                    { "type": "m.space.child", "state_key": public, "content": { "via": [a_name], "suggested": true } },
                    { "type": "m.space.child", "state_key": private, "content": { "via": [a_name] } }
                ]
            }),
        )
        .await;
    let (st, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!("/_matrix/federation/v1/hierarchy/{}", enc(&space)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room"]["room_id"], space);
    assert_eq!(v["room"]["room_type"], "m.space");
    assert_eq!(
        v["room"]["children_state"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    let children: Vec<&str> = v["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["room_id"].as_str())
        .collect();
    assert_eq!(children, [public.as_str()], "{v}");
    assert_eq!(v["children"][0]["name"], "Public child");
    assert_eq!(v["inaccessible_children"], json!([private]), "{v}");
    // suggested_only: the private child is not even named.
    let (_, v) = fed(
        &bs,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/hierarchy/{}?suggested_only=true",
            enc(&space)
        ),
        None,
    )
    .await;
    assert_eq!(v["inaccessible_children"], json!([]), "{v}");
    assert_eq!(
        v["room"]["children_state"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    // A private room as root: 404, as for a room unknown here.
    let (st, _) = fed(
        &bs,
        &a,
        Method::GET,
        &format!("/_matrix/federation/v1/hierarchy/{}", enc(&private)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(
    served_reads_and_refusals,
    history_visibility_for_servers,
    backfill_on_messages,
    hierarchy_over_federation
);
