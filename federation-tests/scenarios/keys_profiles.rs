//! Palabre <-> Palabre: keys through the notary both ways, profiles read across servers.

use reqwest::StatusCode;

use super::{check_notary, own_keys, reads_remote_profile, remote_profile_not_found};
use crate::harness::{enc, Backend, Homeserver, Net, PalabreOptions};

/// A on SQLite and B on PostgreSQL, two processes with TLS: each server's notary returns the
/// other's keys signed by both; each server's users read the other's users' profiles through
/// signed requests; an unsigned federation request is refused. B restarted keeps its data
/// dir: same signing key, same users and sessions, and A still talks to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_palabre_keys_and_profiles() {
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let mut b = net
        .palabre(
            "b",
            PalabreOptions {
                backend: Backend::Postgres,
                ..Default::default()
            },
        )
        .await;

    check_notary(&net, &a, &b).await;
    check_notary(&net, &b, &a).await;

    let alice = a.client().register("alice").await;
    let bob = b.client().register("bob").await;
    alice.set_displayname("Alice on A").await;
    bob.set_displayname("Bob on B").await;
    reads_remote_profile(&alice, &bob, "Bob on B").await;
    reads_remote_profile(&bob, &alice, "Alice on A").await;
    remote_profile_not_found(&alice, b.server_name()).await;
    remote_profile_not_found(&bob, a.server_name()).await;

    // The federation listener wants signed requests.
    let url = format!(
        "{}/_matrix/federation/v1/query/profile?user_id={}",
        b.federation_base(),
        enc(&bob.user_id)
    );
    let resp = net.https().get(&url).send().await.expect(&url);
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A restart (SIGTERM, same data dir and ports).
    let keys_before = own_keys(&net, &b).await;
    let pid = b.pid();
    b.restart().await;
    assert_ne!(b.pid(), pid, "a new process");
    assert_eq!(
        own_keys(&net, &b).await["verify_keys"],
        keys_before["verify_keys"]
    );
    reads_remote_profile(&alice, &bob, "Bob on B").await;
    reads_remote_profile(&bob, &alice, "Alice on A").await;
}
