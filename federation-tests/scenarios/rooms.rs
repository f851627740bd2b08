//! Rooms across servers: joins (by alias, by room id after an invite), messages both ways, a
//! server stopped while the other sends. Written against the client API only, so the same
//! scenario runs between two Palabres and between Palabre and Synapse in both directions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{timeline, unique, Homeserver, Net, PalabreOptions, Session, FED_WAIT};

/// The ids of the `m.room.message` events among `events`, with their bodies, in order.
fn messages_of(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_owned(),
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `from` sends `body`; `to` sees it through /sync, same event id and sender. Returns the
/// event id.
async fn relay(from: &Session, to: &Session, room: &str, body: &str) -> String {
    let id = from.send_text(room, body).await;
    let ev = to.wait_for_text(room, body, FED_WAIT).await;
    assert_eq!(ev["event_id"], id.as_str(), "{ev}");
    assert_eq!(ev["sender"], from.user_id.as_str(), "{ev}");
    id
}

/// A room hosted on `host` joined by a user of `guest`, by alias, then messages both ways;
/// then a private room on `host` with the guest invited, who joins by room id.
async fn join_and_talk(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let mut members = vec![h.user_id.clone(), g.user_id.clone()];
    members.sort();

    // Join by alias through the host (directory query, then the join itself).
    let (room, alias) = h.create_public_room(&unique("talk")).await;
    let joined = g.join(&alias, &[host.server_name()]).await;
    assert_eq!(joined, room, "joined through {alias}");
    h.wait_for_membership(&room, &g.user_id, "join", FED_WAIT)
        .await;
    assert_eq!(h.joined_members(&room).await, members);
    assert_eq!(g.joined_members(&room).await, members);

    // Messages both ways, each seen on the other side before the next is sent: a linear
    // history, which both servers must then hold identically.
    let mut sent = vec![];
    for i in 0..5 {
        let body = format!("{} says {i}", host.label());
        sent.push(relay(&h, &g, &room, &body).await);
        let body = format!("{} answers {i}", guest.label());
        sent.push(relay(&g, &h, &room, &body).await);
    }
    for s in [&h, &g] {
        let ids: Vec<String> = messages_of(&s.messages(&room).await)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, sent, "history on {}", s.server_name());
    }
}

/// A private encrypted room on `host` with the guest invited (at creation), who sees the invite
/// with the room's stripped state (name, encryption, the invite), joins by room id through the host, and talks; then a second
/// invite (through /invite) that the guest rejects: it leaves the guest's /sync for
/// `rooms.leave`, and the host sees the guest's leave.
async fn invite_and_join(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let private = h
        .create_room(json!({
            "preset": "private_chat",
            "name": "Invitation",
            "invite": [g.user_id],
            "initial_state": [{
                "type": "m.room.encryption", "state_key": "",
                "content": { "algorithm": "m.megolm.v1.aes-sha2" },
            }],
        }))
        .await;
    let inv = g.wait_for_section(&private, "invite", FED_WAIT).await;
    let state = inv["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Invitation"),
        "stripped state carries the room name: {inv}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.encryption"
            && e["content"]["algorithm"] == "m.megolm.v1.aes-sha2"),
        "stripped state says the room is encrypted: {inv}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == g.user_id.as_str()
            && e["sender"] == h.user_id.as_str()
            && e["content"]["membership"] == "invite"),
        "the invite itself is in the invite state: {inv}"
    );
    let joined = g.join(&private, &[]).await;
    assert_eq!(joined, private);
    h.wait_for_membership(&private, &g.user_id, "join", FED_WAIT)
        .await;
    relay(&g, &h, &private, "thanks for the invite").await;
    relay(&h, &g, &private, "welcome").await;

    // Rejected invite: a second room, invited through /invite.
    let other = h.create_room(json!({ "preset": "private_chat" })).await;
    h.invite(&other, &g.user_id).await;
    g.wait_for_section(&other, "invite", FED_WAIT).await;
    g.leave(&other).await;
    g.wait_for_section(&other, "leave", FED_WAIT).await;
    h.wait_for_membership(&other, &g.user_id, "leave", FED_WAIT)
        .await;
    let (st, v) = g.try_join(&other, &[]).await;
    assert_ne!(st, reqwest::StatusCode::OK, "no invite any more: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_palabre_join_and_messages() {
    let net = Net::new();
    let (a, b) = net.palabre_pair().await;
    join_and_talk(&a, &b).await;
    join_and_talk(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_user_joins_synapse_room() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    join_and_talk(&syn, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_user_joins_palabre_room() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    join_and_talk(&a, &syn).await;
}

/// B is stopped while a user of A sends 200 messages into a room B's user is in; after B
/// restarts, B's user receives all of them through /sync, each once, in the order sent, and
/// B's /messages holds the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_down_while_200_messages_sent() {
    const N: usize = 200;
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let mut b = net.palabre("b", PalabreOptions::default()).await;
    let alice = a.client().register("alice").await;
    let bob = b.client().register("bob").await;
    let (room, alias) = alice.create_public_room("outage").await;
    bob.join(&alias, &[a.server_name()]).await;
    alice
        .wait_for_membership(&room, &bob.user_id, "join", FED_WAIT)
        .await;
    relay(&alice, &bob, &room, "before the outage").await;
    // Bob's /sync position is now past everything sent before the outage.
    bob.try_sync(0).await.expect("sync before the outage");

    b.stop();
    let mut sent = Vec::with_capacity(N);
    for i in 0..N {
        let body = format!("m{i:03}");
        let id = alice.send_text(&room, &body).await;
        sent.push((id, body));
    }
    b.start().await;

    // Everything that reaches Bob's /sync from now on, in order.
    let mut seen: Vec<(String, String)> = vec![];
    let last = sent.last().unwrap().1.clone();
    bob.sync_until(
        &format!("the {N} messages sent while B was down"),
        Duration::from_secs(180),
        |v| {
            let batch = messages_of(timeline(v, &room));
            let done = batch.iter().any(|(_, body)| *body == last);
            seen.extend(batch);
            done.then_some(())
        },
    )
    .await;
    // Late duplicates would come right after: give them a moment.
    let v = bob.try_sync(1000).await.expect("sync");
    seen.extend(messages_of(timeline(&v, &room)));
    assert_eq!(seen.len(), N, "each message once through /sync");
    assert_eq!(seen, sent, "in the order sent");

    let history: Vec<(String, String)> = messages_of(&bob.messages(&room).await)
        .into_iter()
        .filter(|(_, body)| body != "before the outage")
        .collect();
    assert_eq!(history, sent, "B's /messages");
    let history: Vec<(String, String)> = messages_of(&alice.messages(&room).await)
        .into_iter()
        .filter(|(_, body)| body != "before the outage")
        .collect();
    assert_eq!(history, sent, "A's /messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_across_servers() {
    let net = Net::new();
    let (a, b) = net.palabre_pair().await;
    invite_and_join(&a, &b).await;
    invite_and_join(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_user_invites_synapse_user() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    invite_and_join(&a, &syn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_user_invites_palabre_user() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    invite_and_join(&syn, &a).await;
}

/// A user of B knocks on a knockable room of A (by alias through A): B's /sync shows the knock
/// with the room's stripped state, A's user sees it and invites, B's user joins; a knock on an
/// invite-only room is refused.
async fn knock_and_enter(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let alias = unique("knock");
    let room = h
        .create_room(json!({
            "preset": "private_chat",
            "room_version": "10",
            "name": "Knock knock",
            "room_alias_name": alias,
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "knock" },
            }],
        }))
        .await;
    let alias = format!("#{alias}:{}", host.server_name());
    let (st, v) = g.try_knock(&alias, &[host.server_name()]).await;
    assert_eq!(st, reqwest::StatusCode::OK, "knock: {v}");
    assert_eq!(v["room_id"], room.as_str());
    let k = g.wait_for_section(&room, "knock", FED_WAIT).await;
    let state = k["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock knock"),
        "knock state: {k}"
    );
    h.wait_for_membership(&room, &g.user_id, "knock", FED_WAIT)
        .await;
    // Still not in: a join is refused while only knocking.
    let (st, _) = g.try_join(&room, &[host.server_name()]).await;
    assert_ne!(st, reqwest::StatusCode::OK, "a knock is not an invite");
    h.invite(&room, &g.user_id).await;
    g.wait_for_section(&room, "invite", FED_WAIT).await;
    g.join(&room, &[]).await;
    h.wait_for_membership(&room, &g.user_id, "join", FED_WAIT)
        .await;
    relay(&g, &h, &room, "knocked and entered").await;

    // An invite-only room refuses knocks.
    let closed = h.create_room(json!({ "preset": "private_chat" })).await;
    let (st, v) = g.try_knock(&closed, &[host.server_name()]).await;
    assert_eq!(
        st,
        reqwest::StatusCode::FORBIDDEN,
        "knock on invite-only: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocks_across_servers() {
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let b = net.palabre("b", PalabreOptions::default()).await;
    knock_and_enter(&a, &b).await;
}

/// Timing, not a check (run it on purpose, with a release binary for meaningful figures):
/// a room of 1 000 members on A, joined by a user of B; prints the time of the join request
/// (make_join, send_join with the whole state and auth chain, verification, storage).
///
///     cargo build --release
///     PALABRE_FEDTESTS_BIN=$PWD/target/release/palabre \
///       bash scripts/test.sh -E 'test(join_1000_member_room)' --run-ignored all --no-capture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore] // a timing: prints figures, asserts only that the join worked
async fn join_1000_member_room() {
    const MEMBERS: usize = 1000;
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let b = net.palabre("b", PalabreOptions::default()).await;
    let owner = a.client().register("owner").await;
    let (room, alias) = owner.create_public_room("big").await;
    let started = std::time::Instant::now();
    let client = a.client();
    let mut made = 1;
    while made < MEMBERS {
        let n = (MEMBERS - made).min(16);
        let joins = (0..n).map(|i| {
            let (client, room) = (client.clone(), room.clone());
            async move {
                let s = client.register(&format!("m{:04}", made + i)).await;
                s.join(&room, &[]).await;
            }
        });
        futures_util::future::join_all(joins).await;
        made += n;
    }
    println!(
        "join_1000_member_room: {MEMBERS} members on A in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let guest = b.client().register("guest").await;
    let t = std::time::Instant::now();
    guest.join(&alias, &[a.server_name()]).await;
    let join_time = t.elapsed();
    let members = guest.joined_members(&room).await;
    println!(
        "join_1000_member_room: B joined in {:.0} ms; B sees {} joined members",
        join_time.as_secs_f64() * 1000.0,
        members.len()
    );
    assert_eq!(members.len(), MEMBERS + 1);
    let t = std::time::Instant::now();
    relay(&guest, &owner, &room, "hello big room").await;
    println!(
        "join_1000_member_room: first message B -> A seen in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
