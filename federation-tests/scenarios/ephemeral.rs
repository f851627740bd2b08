//! Ephemeral data across servers: typing notifications, read receipts, and presence (when both
//! servers have it on), each seen by the other server's user through /sync.

use serde_json::{json, Value};

use crate::harness::{enc, unique, Backend, Homeserver, Net, PalabreOptions, Session, FED_WAIT};

fn ephemeral<'a>(sync: &'a Value, room: &str) -> impl Iterator<Item = &'a Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
}

/// A public room on `host` that a user of `guest` joined: (host user, guest user, room).
async fn shared_room(host: &dyn Homeserver, guest: &dyn Homeserver) -> (Session, Session, String) {
    let h = host.client().register(&unique("host")).await;
    let g = guest.client().register(&unique("guest")).await;
    let (room, alias) = h.create_public_room(&unique("chat")).await;
    g.join(&alias, &[host.server_name()]).await;
    h.wait_for_membership(&room, &g.user_id, "join", FED_WAIT)
        .await;
    (h, g, room)
}

async fn typing_and_receipts(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let (h, g, room) = shared_room(host, guest).await;
    // The guest types; the host's user sees it.
    let (st, v) = g
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc(&g.user_id)
            ),
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "typing: {v}");
    h.sync_until("the guest typing", FED_WAIT, |v| {
        ephemeral(v, &room)
            .any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|u| u == g.user_id.as_str()))
            })
            .then_some(())
    })
    .await;
    // The host's user writes; the guest reads it; the host's user sees the receipt.
    let id = h.send_text(&room, "read me").await;
    g.wait_for_text(&room, "read me", FED_WAIT).await;
    let (st, v) = g
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "receipt: {v}");
    h.sync_until("the guest's read receipt", FED_WAIT, |v| {
        ephemeral(v, &room)
            .any(|e| {
                e["type"] == "m.receipt" && e["content"][&id]["m.read"][&g.user_id]["ts"].is_i64()
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_palabre_typing_receipts_presence() {
    let net = Net::new();
    let on = PalabreOptions {
        presence: true,
        ..Default::default()
    };
    let a = net.palabre("a", on.clone()).await;
    let b = net
        .palabre(
            "b",
            PalabreOptions {
                backend: Backend::Postgres,
                ..on
            },
        )
        .await;
    typing_and_receipts(&a, &b).await;
    typing_and_receipts(&b, &a).await;

    // Presence: the guest goes online with a status; the host's user sees it.
    let (h, g, _) = shared_room(&a, &b).await;
    let (st, v) = g
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&g.user_id)),
            json!({ "presence": "online", "status_msg": "in a meeting" }),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "presence: {v}");
    h.sync_until("the guest's presence", FED_WAIT, |v| {
        v["presence"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| {
                e["sender"] == g.user_id.as_str()
                    && e["content"]["presence"] == "online"
                    && e["content"]["status_msg"] == "in a meeting"
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_synapse_typing_receipts() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    typing_and_receipts(&a, &syn).await;
    typing_and_receipts(&syn, &a).await;
}
