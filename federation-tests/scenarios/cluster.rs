//! A server of several nodes on one PostgreSQL: the federation sender is a singleton of the
//! cluster, taken over when its holder dies.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{enc, Backend, Client, Homeserver, Net, Palabre, PalabreOptions, FED_WAIT};

const SENDER: &str = r#"palabre_cluster_singleton{singleton="federation_sender"}"#;

/// A metric series' value on the metrics listener at `addr`.
async fn metric_at(addr: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/_palabre/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .next()
}

/// Which of the nodes holds the federation sender now (None while none does).
async fn sender_of(nodes: &[&Palabre]) -> Option<usize> {
    for (i, n) in nodes.iter().enumerate() {
        if n.metric(SENDER).await == Some(1.0) {
            return Some(i);
        }
    }
    None
}

/// Server A runs as two nodes (A1, A2) on PostgreSQL, B is another Palabre. Alice sends
/// through both nodes, retrying a request on the other node when a connection fails (same
/// device, same transaction id); the node holding the federation sender is killed with
/// SIGKILL in the middle. B receives every message exactly once, and the other node holds the
/// sender within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_failover_loses_nothing() {
    let net = Net::new();
    let b = net.palabre("b", PalabreOptions::default()).await;
    failover_to(&net, &b).await;
}

/// The same with Synapse as the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_failover_loses_nothing_synapse() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    failover_to(&net, &syn).await;
}

async fn failover_to(net: &Net, b: &dyn Homeserver) {
    let a1 = net
        .palabre(
            "a",
            PalabreOptions {
                backend: Backend::Postgres,
                ..Default::default()
            },
        )
        .await;
    let a2 = a1.node("a2").await;
    let alice = a1.client().register("alice").await;
    let bob = b.client().register("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room, &[a1.server_name()]).await;
    alice.send_text(&room, "hello").await;
    bob.wait_for_text(&room, "hello", FED_WAIT).await;

    let mut nodes = [a1, a2];
    let mut holder = None;
    for _ in 0..50 {
        holder = sender_of(&nodes.iter().collect::<Vec<_>>()).await;
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = holder.expect("a node holds the federation sender");
    let other = 1 - holder;
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    let clients_metrics: Vec<u16> = nodes.iter().map(|n| n.metrics_port).collect();

    // Two writers, one per node; each falls back to the other node when its own is gone.
    let total = 60;
    let send = |i: usize| {
        let clients = &clients;
        let (room, token) = (&room, &alice.token);
        async move {
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/fo{i}",
                enc(room)
            );
            let body = json!({"msgtype": "m.text", "body": format!("fo{i}")});
            for attempt in 0..40 {
                let c = &clients[(i + attempt) % 2];
                if let Ok((st, _)) = c
                    .try_call(Method::PUT, &path, Some(token), Some(&body))
                    .await
                {
                    if st.is_success() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("fo{i} never accepted");
        }
    };
    let writers = async {
        for i in 0..total {
            send(i).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (survivor, killed) = (other, &mut nodes[holder]);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        killed.kill();
        let at = Instant::now();
        // The survivor takes the sender over.
        let url = format!("127.0.0.1:{}", clients_metrics[survivor]);
        loop {
            if metric_at(&url, SENDER).await == Some(1.0) {
                break;
            }
            assert!(
                at.elapsed() < Duration::from_secs(5),
                "no node took the federation sender over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        at.elapsed()
    };
    let ((), took) = tokio::join!(writers, killer);
    eprintln!("federation sender taken over {took:?} after the kill");

    // Every message reaches B, once.
    let deadline = Instant::now() + FED_WAIT;
    loop {
        let history = bob.messages(&room).await;
        let counts: Vec<usize> = (0..total)
            .map(|i| {
                history
                    .iter()
                    .filter(|e| e["content"]["body"] == format!("fo{i}"))
                    .count()
            })
            .collect();
        assert!(
            counts.iter().all(|c| *c <= 1),
            "duplicates on B: {counts:?}"
        );
        if counts.iter().all(|c| *c == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B is missing messages: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nodes[holder].start().await;
}
