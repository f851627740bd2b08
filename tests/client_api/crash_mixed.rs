//! The crash test: the real binary under mixed load (room messages with txn ids, to-device
//! messages with txn ids and retries of acknowledged ones, one-time key uploads and claims,
//! account data, a client syncing), killed with SIGKILL three times and restarted on the same
//! data. Everything acknowledged is there exactly once, retried txns give the original ids,
//! sync tokens from before a crash keep working and never go back, and the time from start to
//! the first answered /sync is reported.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    common::{enc, free_port, Backend, TestServer, User},
    crash::{client_of, spawn},
};

crate::both_backends!(kill_9_under_mixed_load);

/// Timelines as long as the server allows, so that the syncs of the test see every event.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;

/// What the clients were told was done.
#[derive(Default)]
struct Acked {
    /// txn id -> event id
    events: HashMap<String, String>,
    /// to-device payload numbers
    to_device: Vec<u64>,
    /// account data type -> value
    account_data: HashMap<String, u64>,
    /// one-time key ids claimed from bob
    claimed: Vec<String>,
}

/// The numbers of a sync components: `s<a>_<b>_...`.
fn positions(token: &str) -> Vec<i64> {
    token
        .trim_start_matches('s')
        .split('_')
        .map(|p| p.parse().unwrap())
        .collect()
}

async fn put(s: &TestServer, u: &User, path: &str, body: Value) -> Option<(StatusCode, Value)> {
    s.try_call(Method::PUT, path, Some(&u.token), Some(body))
        .await
}

async fn post(s: &TestServer, u: &User, path: &str, body: Value) -> Option<(StatusCode, Value)> {
    s.try_call(Method::POST, path, Some(&u.token), Some(body))
        .await
}

/// One round of load until the server dies; what was acknowledged.
async fn load(s: &TestServer, alice: &User, bob: &User, room: &str, round: usize) -> Acked {
    let mut acked = Acked::default();
    let senders = (0..3).map(|w| async move {
        let mut out = vec![];
        for i in 0.. {
            let txn = format!("r{round}w{w}-{i}");
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            );
            let body = json!({"msgtype": "m.text", "body": txn});
            match put(s, alice, &path, body).await {
                Some((StatusCode::OK, v)) => {
                    out.push((txn, v["event_id"].as_str().unwrap().to_owned()))
                }
                Some((st, v)) => panic!("send {txn}: {st} {v}"),
                None => break,
            }
        }
        out
    });
    let to_device = async {
        let mut out = vec![];
        for i in 0u64.. {
            let n = (round as u64) * 1_000_000 + i;
            let body =
                json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"n": n}}}});
            let path = format!("/_matrix/client/v3/sendToDevice/m.test/td{n}");
            match put(s, alice, &path, body.clone()).await {
                Some((StatusCode::OK, _)) => out.push(n),
                Some((st, v)) => panic!("to-device {n}: {st} {v}"),
                None => break,
            }
            // Retry an acknowledged message now and then: nothing new may be queued.
            if i % 2 == 1 {
                let old = out[out.len() / 2];
                let body =
                    json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"n": old}}}});
                let path = format!("/_matrix/client/v3/sendToDevice/m.test/td{old}");
                if put(s, alice, &path, body).await.is_none() {
                    break;
                }
            }
        }
        out
    };
    let account_data = async {
        let mut out = HashMap::new();
        for i in 0u64.. {
            let kind = format!("m.crash.{round}.{}", i % 20);
            let path = format!(
                "/_matrix/client/v3/user/{}/account_data/{kind}",
                enc(&alice.user_id)
            );
            match put(s, alice, &path, json!({"i": i})).await {
                Some((StatusCode::OK, _)) => {
                    out.insert(kind, i);
                }
                Some((st, v)) => panic!("account data {kind}: {st} {v}"),
                None => break,
            }
        }
        out
    };
    let keys = async {
        let mut claimed = vec![];
        for i in 0u64.. {
            let id = format!("signed_curve25519:r{round}k{i}");
            let up = json!({"one_time_keys": {id: {"key": format!("key{round}x{i}")}}});
            if post(s, bob, "/_matrix/client/v3/keys/upload", up)
                .await
                .is_none()
            {
                break;
            }
            let claim = json!({"one_time_keys": {bob.user_id.clone(): {bob.device_id.clone(): "signed_curve25519"}}});
            match post(s, alice, "/_matrix/client/v3/keys/claim", claim).await {
                Some((StatusCode::OK, v)) => {
                    if let Some(k) = v["one_time_keys"][&bob.user_id][&bob.device_id].as_object() {
                        claimed.extend(k.keys().cloned());
                    }
                }
                Some((st, v)) => panic!("claim: {st} {v}"),
                None => break,
            }
        }
        claimed
    };
    let (sent, td, ad, claimed) = tokio::join!(
        futures::future::join_all(senders),
        to_device,
        account_data,
        keys
    );
    acked.events = sent.into_iter().flatten().collect();
    acked.to_device = td;
    acked.account_data = ad;
    acked.claimed = claimed;
    acked
}

/// Bob syncs from `token` until nothing more comes (or the server dies): the to-device numbers
/// and message bodies he got, and his last token.
async fn drain(
    s: &TestServer,
    bob: &User,
    room: &str,
    mut token: String,
    seen_n: &mut Vec<u64>,
    seen_bodies: &mut Vec<String>,
) -> String {
    loop {
        let path = format!(
            "/_matrix/client/v3/sync?timeout=0&filter={}&since={}",
            enc(SYNC_FILTER),
            enc(&token)
        );
        let Some((StatusCode::OK, v)) =
            s.try_call(Method::GET, &path, Some(&bob.token), None).await
        else {
            return token;
        };
        let next = v["next_batch"].as_str().unwrap().to_owned();
        let old = positions(&token);
        let new = positions(&next);
        assert!(
            old.iter().zip(&new).all(|(o, n)| n >= o),
            "a sync token went back: {token} -> {next}"
        );
        let td = v["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        seen_n.extend(td.iter().filter_map(|e| e["content"]["n"].as_u64()));
        let timeline = v["rooms"]["join"][room]["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        seen_bodies.extend(
            timeline
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
        );
        let limited = v["rooms"]["join"][room]["timeline"]["limited"] == true;
        assert!(!limited, "bob's timeline got a gap");
        if td.is_empty() && timeline.is_empty() && next == token {
            return next;
        }
        token = next;
    }
}

async fn kill_9_under_mixed_load(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(b, dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), &db, port).await;
    let s = client_of(port);
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "trusted_private_chat", "invite": [bob.user_id]}),
        )
        .await;
    s.join(&bob, &room).await;
    let mut token = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut all = Acked::default();
    let (mut seen_n, mut seen_bodies) = (vec![], vec![]);
    let mut restarts = vec![];
    for round in 0..3 {
        let alive = Arc::new(AtomicBool::new(true));
        let kill = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            child.0.kill().expect("SIGKILL");
            child.0.wait().unwrap();
            alive.store(false, Ordering::SeqCst);
        };
        // bob syncs while the load runs: his tokens must survive the crash.
        let syncing = async {
            let mut t = token.clone();
            let (mut n, mut bodies) = (vec![], vec![]);
            while alive.load(Ordering::SeqCst) {
                t = drain(&s, &bob, &room, t, &mut n, &mut bodies).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (t, n, bodies)
        };
        let (acked, (), (t, n, bodies)) =
            tokio::join!(load(&s, &alice, &bob, &room, round), kill, syncing);
        assert!(!acked.events.is_empty(), "round {round}: nothing was sent");
        token = t;
        seen_n.extend(n);
        seen_bodies.extend(bodies);
        all.events.extend(acked.events);
        all.to_device.extend(acked.to_device);
        all.account_data.extend(acked.account_data);
        all.claimed.extend(acked.claimed);

        let start = Instant::now();
        child = spawn(dir.path(), &db, port).await;
        // The first /sync answered: bob's, from his pre-crash token.
        token = drain(&s, &bob, &room, token, &mut seen_n, &mut seen_bodies).await;
        restarts.push(start.elapsed());
    }
    eprintln!(
        "{b:?}: {} events, {} to-device messages, {} account data types, {} keys claimed; restart to first answered /sync: {restarts:?}",
        all.events.len(),
        all.to_device.len(),
        all.account_data.len(),
        all.claimed.len()
    );
    assert!(!all.to_device.is_empty() && !all.account_data.is_empty() && !all.claimed.is_empty());

    // A message after the last restart reaches bob's pre-crash token.
    s.send_text(&alice, &room, "after", "after the crashes")
        .await;
    let _ = drain(&s, &bob, &room, token, &mut seen_n, &mut seen_bodies).await;
    assert!(seen_bodies.iter().any(|b| b == "after the crashes"));

    // Every acknowledged event once in the room, and once in bob's syncs.
    let (st, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100000",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut stored: HashMap<String, usize> = HashMap::new();
    for e in v["chunk"].as_array().unwrap() {
        if e["type"] == "m.room.message" {
            *stored
                .entry(e["content"]["body"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let mut synced: HashMap<&str, usize> = HashMap::new();
    for body in &seen_bodies {
        *synced.entry(body.as_str()).or_default() += 1;
    }
    for txn in all.events.keys() {
        assert_eq!(
            stored.get(txn),
            Some(&1),
            "acknowledged {txn} stored {:?} times",
            stored.get(txn)
        );
        assert_eq!(
            synced.get(txn.as_str()),
            Some(&1),
            "{txn} synced {:?} times",
            synced.get(txn.as_str())
        );
    }
    // A retried txn is the original event.
    for (txn, id) in all.events.iter().take(20) {
        let (st, v) = s
            .put(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(&room)
                ),
                json!({"msgtype": "m.text", "body": txn}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["event_id"], id.as_str(), "retry of {txn}");
    }
    // Every acknowledged to-device message reached bob, once.
    let mut got: HashMap<u64, usize> = HashMap::new();
    for n in &seen_n {
        *got.entry(*n).or_default() += 1;
    }
    for n in &all.to_device {
        assert_eq!(
            got.get(n),
            Some(&1),
            "to-device {n} delivered {:?} times",
            got.get(n)
        );
    }
    // Account data: the last acknowledged write of each type (a later unacknowledged one may
    // have landed too, never an earlier one).
    let sync = s.sync(&alice, None, 0).await;
    let ad: HashMap<String, u64> = sync["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["type"].as_str()?.to_owned(), e["content"]["i"].as_u64()?)))
        .collect();
    for (kind, i) in &all.account_data {
        let have = ad.get(kind).copied();
        assert!(
            have.is_some_and(|h| h >= *i),
            "{kind}: acknowledged {i}, stored {have:?}"
        );
    }
    // No one-time key was handed out twice.
    let unique: HashSet<&String> = all.claimed.iter().collect();
    assert_eq!(
        unique.len(),
        all.claimed.len(),
        "a one-time key was claimed twice"
    );
    drop(child);
}
