//! `federation.allow_list`: a server outside the list is refused and never contacted.

use reqwest::StatusCode;

use super::reads_remote_profile;
use crate::harness::{enc, Homeserver, Net, PalabreOptions, Tripwire};

/// C allows only B. A's signed request to C gets 403 M_FORBIDDEN (relayed to A's user); C's
/// user asking for A gets 403 too, and C never opens a connection to A's name: C is told that
/// name lives at a tripwire listener, which must see no connection. B and C, and A and B,
/// still talk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_refuses_and_never_contacts() {
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let b = net.palabre("b", PalabreOptions::default()).await;
    let tripwire = Tripwire::new().await;
    let c = net
        .palabre(
            "c",
            PalabreOptions {
                allow_list: Some(vec![b.name.clone()]),
                resolve_overrides: vec![(a.name.clone(), tripwire.addr.to_string())],
                ..Default::default()
            },
        )
        .await;
    let alice = a.client().register("alice").await;
    let bob = b.client().register("bob").await;
    let carol = c.client().register("carol").await;
    alice.set_displayname("Alice").await;
    bob.set_displayname("Bob").await;
    carol.set_displayname("Carol").await;

    // A -> C: refused by C.
    let (st, v) = alice.profile(&carol.user_id).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN", "{v}");
    // C -> A: refused by C itself.
    let (st, v) = carol.profile(&alice.user_id).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN", "{v}");
    // C's notary does not fetch A's keys either.
    let url = format!(
        "{}/_matrix/key/v2/query/{}",
        c.federation_base(),
        enc(a.server_name())
    );
    let resp = net.https().get(&url).send().await.expect(&url);
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["server_keys"], serde_json::json!([]), "{v}");

    // The allowed pairs work, both ways.
    reads_remote_profile(&carol, &bob, "Bob").await;
    reads_remote_profile(&bob, &carol, "Carol").await;
    reads_remote_profile(&alice, &bob, "Bob").await;
    reads_remote_profile(&bob, &alice, "Alice").await;

    assert_eq!(tripwire.hits(), 0, "C connected to A's address");
}
