//! State resolution and backfill across servers: concurrent changes of the same state made
//! while the servers could not talk converge to the same resolved state on both; a user who
//! joins late pages back through the whole history (backfill), between two Palabres and
//! between Palabre and Synapse.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{json, Value};

use crate::harness::{enc, unique, Backend, Homeserver, Net, PalabreOptions, Session, FED_WAIT};

/// The room's state as `s` sees it: (type, state_key) -> (event id, content).
async fn state_of(s: &Session, room: &str) -> BTreeMap<(String, String), (String, Value)> {
    let (st, v) = s
        .get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room)))
        .await;
    assert_eq!(
        st,
        reqwest::StatusCode::OK,
        "/state on {}: {v}",
        s.server_name()
    );
    v.as_array()
        .expect("state array")
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["state_key"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    e["event_id"].as_str().unwrap_or_default().to_owned(),
                    e["content"].clone(),
                ),
            )
        })
        .collect()
}

/// Waits until both sessions see the same state (event ids and contents) in `room`, with the
/// given topic; returns that state.
async fn converged(
    a: &Session,
    b: &Session,
    room: &str,
    topic: &str,
) -> BTreeMap<(String, String), (String, Value)> {
    let deadline = tokio::time::Instant::now() + FED_WAIT;
    loop {
        let (sa, sb) = (state_of(a, room).await, state_of(b, room).await);
        let key = ("m.room.topic".to_owned(), String::new());
        if sa == sb && sa.get(&key).is_some_and(|(_, c)| c["topic"] == topic) {
            return sa;
        }
        if tokio::time::Instant::now() > deadline {
            let diff: Vec<_> = sa
                .iter()
                .filter(|(k, v)| sb.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone(), sb.get(k).cloned()))
                .collect();
            panic!("the two servers never agreed on the state of {room}: {diff:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn set_state(s: &Session, room: &str, kind: &str, content: Value) -> String {
    let (st, v) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room)),
            content,
        )
        .await;
    assert_eq!(
        st,
        reqwest::StatusCode::OK,
        "{kind} on {}: {v}",
        s.server_name()
    );
    v["event_id"].as_str().unwrap().to_owned()
}

/// A (SQLite) and B (PostgreSQL) share a room where both users may change the topic and name.
/// A is stopped while B's user changes them; B is stopped while A's user changes them too;
/// then both run again and exchange what they queued. Both end with the same state, the one
/// state resolution v2 gives (equal power: the later change wins), and later messages from
/// either side (which merge the fork) keep it so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_state_resolved_identically() {
    let net = Net::new();
    let mut a = net.palabre("a", PalabreOptions::default()).await;
    let mut b = net
        .palabre(
            "b",
            PalabreOptions {
                backend: Backend::Postgres,
                ..Default::default()
            },
        )
        .await;
    let alice = a.client().register(&unique("alice")).await;
    let bob = b.client().register(&unique("bob")).await;
    let (room, alias) = alice.create_public_room(&unique("conflict")).await;
    bob.join(&alias, &[a.server_name()]).await;
    alice
        .wait_for_membership(&room, &bob.user_id, "join", FED_WAIT)
        .await;
    // Bob may change the state too.
    let (_, mut pl) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            enc(&room)
        ))
        .await;
    pl["users"][&bob.user_id] = json!(100);
    let pl_id = set_state(&alice, &room, "m.room.power_levels", pl).await;
    bob.wait_for_event(&room, "bob's new power", FED_WAIT, |e| {
        e["event_id"] == pl_id.as_str()
    })
    .await;
    let id = alice.send_text(&room, "before the split").await;
    bob.wait_for_event(&room, "the last common message", FED_WAIT, |e| {
        e["event_id"] == id.as_str()
    })
    .await;

    // B's user changes the topic and name while A is down…
    a.stop();
    set_state(
        &bob,
        &room,
        "m.room.topic",
        json!({ "topic": "topic from B" }),
    )
    .await;
    set_state(&bob, &room, "m.room.name", json!({ "name": "name from B" })).await;
    // …then A's user, later, while B is down.
    b.stop();
    a.start().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    set_state(
        &alice,
        &room,
        "m.room.topic",
        json!({ "topic": "topic from A" }),
    )
    .await;
    set_state(
        &alice,
        &room,
        "m.room.name",
        json!({ "name": "name from A" }),
    )
    .await;
    b.start().await;

    // Each receives the other's fork: the same resolution on both sides.
    let state = converged(&alice, &bob, &room, "topic from A").await;
    let name = &state[&("m.room.name".to_owned(), String::new())];
    assert_eq!(name.1["name"], "name from A", "{state:?}");

    // Messages from each side merge the fork; the state stays the same everywhere.
    let from_b = bob.send_text(&room, "merging from B").await;
    alice.wait_for_text(&room, "merging from B", FED_WAIT).await;
    let from_a = alice.send_text(&room, "merging from A").await;
    bob.wait_for_text(&room, "merging from A", FED_WAIT).await;
    assert_ne!(from_a, from_b);
    let after = converged(&alice, &bob, &room, "topic from A").await;
    assert_eq!(after, state, "merging changed nothing");
    // Both timelines hold both sides' changes.
    for s in [&alice, &bob] {
        let history = s.messages(&room).await;
        let topics: Vec<&str> = history
            .iter()
            .filter(|e| e["type"] == "m.room.topic")
            .filter_map(|e| e["content"]["topic"].as_str())
            .collect();
        assert!(
            topics.contains(&"topic from A") && topics.contains(&"topic from B"),
            "{}: {topics:?}",
            s.server_name()
        );
    }
}

/// `host`'s user fills a room with 100 messages; `guest`'s user joins and pages back through
/// /messages to the room's creation: every message once, in order.
async fn join_late_and_page_back(host: &dyn Homeserver, guest: &dyn Homeserver) {
    const N: usize = 100;
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let (room, alias) = h.create_public_room(&unique("history")).await;
    let mut sent = Vec::with_capacity(N);
    for i in 0..N {
        let body = format!("old {i:03}");
        sent.push((h.send_text(&room, &body).await, body));
    }
    g.join(&alias, &[host.server_name()]).await;
    let history = g.messages(&room).await;
    let messages: Vec<(String, String)> = history
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_owned(),
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(messages, sent, "history on {}", guest.label());
    assert_eq!(
        history.first().map(|e| e["type"].clone()),
        Some(json!("m.room.create")),
        "down to the room's creation on {}",
        guest.label()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_palabre_palabre() {
    let net = Net::new();
    let (a, b) = net.palabre_pair().await;
    join_late_and_page_back(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_palabre_synapse() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    // A Palabre user pages back through a Synapse room, and the other way round.
    join_late_and_page_back(&syn, &a).await;
    join_late_and_page_back(&a, &syn).await;
}
