//! A crash between an event's commit and its federation send: the event was queued for the
//! other servers in its own transaction, so the restarted server still sends it.

use reqwest::Method;
use serde_json::json;

use crate::harness::{enc, Backend, Homeserver, Net, PalabreOptions, FED_WAIT};

/// A (debug build, failpoint `after_local_event_commit`) aborts right after committing alice's
/// message, before waking its federation sender; restarted without the failpoint, it sends the
/// message to B, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_committed_before_a_crash_reaches_the_peer() {
    let net = Net::new();
    let mut a = net.palabre("a", PalabreOptions::default()).await;
    let b = net
        .palabre(
            "b",
            PalabreOptions {
                backend: Backend::Postgres,
                ..Default::default()
            },
        )
        .await;
    let alice = a.client().register("alice").await;
    let bob = b.client().register("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room, &[a.server_name()]).await;
    alice.send_text(&room, "before").await;
    bob.wait_for_text(&room, "before", FED_WAIT).await;

    a.env = vec![(
        "PALABRE_FAILPOINT".to_owned(),
        "after_local_event_commit".to_owned(),
    )];
    a.restart().await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/crash1",
        enc(&room)
    );
    let body = json!({"msgtype": "m.text", "body": "through the crash"});
    let answer = alice
        .client
        .try_call(Method::PUT, &path, Some(&alice.token), Some(&body))
        .await;
    assert!(answer.is_err(), "the failpoint did not fire: {answer:?}");
    a.kill();
    a.env.clear();
    a.start().await;

    let ev = bob
        .wait_for_text(&room, "through the crash", FED_WAIT)
        .await;
    // The client's retry is the same event, and B holds it once.
    let (st, v) = alice
        .client
        .call(Method::PUT, &path, Some(&alice.token), Some(&body))
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["event_id"], ev["event_id"], "{v}");
    let copies = bob
        .messages(&room)
        .await
        .into_iter()
        .filter(|e| e["content"]["body"] == "through the crash")
        .count();
    assert_eq!(copies, 1);
}
