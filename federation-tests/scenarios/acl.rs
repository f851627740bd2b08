//! Server ACLs (`m.room.server_acl`) across servers: once the host's room denies the guest's
//! server, the guest's new events are not accepted there and its other users cannot join.
//! Both servers are named `localhost:PORT` and ACLs match host names, so denying `localhost`
//! denies every other server (a server does not apply its room's ACL to itself). A denied
//! server still in the room may still make its users' events; the host refuses them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{enc, unique, Homeserver, Net, PalabreOptions, FED_WAIT};

async fn acl_denies(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let (room, alias) = h.create_public_room(&unique("acl")).await;
    g.join(&alias, &[host.server_name()]).await;
    h.wait_for_membership(&room, &g.user_id, "join", FED_WAIT)
        .await;
    let before = g.send_text(&room, "before the ACL").await;
    h.wait_for_text(&room, "before the ACL", FED_WAIT).await;

    let (st, v) = h
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl/",
                enc(&room)
            ),
            json!({ "allow": ["*"], "deny": ["localhost"], "allow_ip_literals": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "set the ACL: {v}");
    // The guest's server learns of the ACL (it then knows its users' events will be refused).
    g.wait_for_event(&room, "the server ACL", FED_WAIT, |e| {
        e["type"] == "m.room.server_acl"
    })
    .await;

    // A new user of the denied server tries to join: its server is in the room and may make
    // the join itself, but the host does not accept it.
    let g2 = guest.client().register(&unique("late")).await;
    let _ = g2.try_join(&room, &[host.server_name()]).await;

    // The guest's new message is not accepted by the host; the host's own message, sent
    // after it, shows the host is alive and past it.
    let refused = g.send_text(&room, "after the ACL").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.send_text(&room, "host still talking").await;
    let history = h.messages(&room).await;
    assert!(
        history.iter().any(|e| e["event_id"] == before.as_str()),
        "the message from before the ACL stays"
    );
    assert!(
        !history.iter().any(|e| e["event_id"] == refused.as_str()),
        "{} accepted an event of a denied server: {refused}",
        host.label()
    );
    let members = h.joined_members(&room).await;
    assert!(
        !members.contains(&g2.user_id),
        "{} let a denied server's user join: {members:?}",
        host.label()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_palabre_server_acl() {
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let b = net.palabre("b", PalabreOptions::default()).await;
    acl_denies(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_synapse_server_acl() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    acl_denies(&a, &syn).await;
    acl_denies(&syn, &a).await;
}
