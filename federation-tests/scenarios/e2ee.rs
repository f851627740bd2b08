//! End-to-end encryption across servers with real Olm/Megolm devices (vodozemac): device keys
//! queried and one-time keys claimed through the user's own server from the other server, the
//! Megolm room key sent in an Olm to-device message over federation (delivered once), encrypted
//! messages both ways, and a new device of the remote user announced by a device-list update.
//! The same scenario runs between two Palabres and between Palabre and Synapse both ways.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    enc,
    olm::{device_keys_verify, OlmDevice, MEGOLM},
    timeline, unique, Homeserver, Net, PalabreOptions, Session, FED_WAIT,
};

/// `who`'s view of `user`'s devices through /keys/query (their server is asked over
/// federation when it is another one).
async fn devices_of(who: &Session, user: &str) -> Value {
    let (st, v) = who
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { user: [] }, "timeout": 10000 }),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "keys/query on {}: {v}", who.server_name());
    v["device_keys"][user].clone()
}

/// The device keys of (user, device) as `who` sees them, signature checked.
async fn device_keys(who: &Session, user: &str, device: &str) -> Value {
    let keys = devices_of(who, user).await[device].clone();
    assert!(
        device_keys_verify(&keys),
        "{} got no verifiable keys for {user} {device}: {keys}",
        who.server_name()
    );
    keys
}

/// Claims a one-time key of (user, device) through `who`'s server; returns the key.
async fn claim_otk(who: &Session, user: &str, device: &str) -> String {
    let (st, v) = who
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { user: { device: "signed_curve25519" } }, "timeout": 10000 }),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "keys/claim on {}: {v}", who.server_name());
    let keys = v["one_time_keys"][user][device]
        .as_object()
        .unwrap_or_else(|| panic!("no one-time key of {user} {device} claimed: {v}"));
    let (_, k) = keys.iter().next().expect("a one-time key");
    k["key"].as_str().expect("key").to_owned()
}

/// Syncs `who` until the room key arrives and the encrypted event `event_id` decrypts; returns
/// its body and the number of room keys received meanwhile.
async fn receive_encrypted(
    who: &Session,
    dev: &mut OlmDevice,
    room: &str,
    event_id: &str,
) -> (String, usize) {
    let mut keys = 0;
    let mut pending: Option<Value> = None;
    let body = who
        .sync_until(
            &format!("the room key and encrypted event {event_id}"),
            FED_WAIT,
            |v| {
                keys += dev.receive_room_keys(who, v);
                if let Some(ev) = timeline(v, room).iter().find(|e| e["event_id"] == event_id) {
                    pending = Some(ev.clone());
                }
                let ev = pending.as_ref()?;
                dev.decrypt(room, ev)
            },
        )
        .await;
    (body, keys)
}

/// One sync that must bring no to-device message: what was delivered is not delivered again.
async fn no_more_to_device(who: &Session) {
    let v = who.try_sync(1000).await.expect("sync");
    let n = v["to_device"]["events"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 0, "{} got a to-device message again: {v}", who.user_id);
}

async fn encrypted_chat(host: &dyn Homeserver, guest: &dyn Homeserver) {
    let h = host.client().register(&unique("alice")).await;
    let g = guest.client().register(&unique("bob")).await;
    let (mut hd, mut gd) = (OlmDevice::new(), OlmDevice::new());
    hd.upload(&h, 5).await;
    gd.upload(&g, 5).await;

    let (room, alias) = h.create_public_room(&unique("secret")).await;
    let (st, v) = h
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
                enc(&room)
            ),
            json!({ "algorithm": MEGOLM }),
        )
        .await;
    assert_eq!(st.as_u16(), 200, "enable encryption: {v}");
    g.join(&alias, &[host.server_name()]).await;
    h.wait_for_membership(&room, &g.user_id, "join", FED_WAIT)
        .await;

    // Host to guest: keys of the guest's device through the host's server, a claimed one-time
    // key, the room key over federation, then a Megolm message.
    let g_keys = device_keys(&h, &g.user_id, &g.device_id).await;
    let g_otk = claim_otk(&h, &g.user_id, &g.device_id).await;
    hd.share_room_key(&h, &room, &g_keys, &g_otk).await;
    let body = format!("secret from {}", host.label());
    let id = hd.send_encrypted(&h, &room, &body).await;
    let (got, keys) = receive_encrypted(&g, &mut gd, &room, &id).await;
    assert_eq!(got, body);
    assert_eq!(keys, 1, "{} got the room key {keys} times", g.user_id);

    // Guest to host.
    let h_keys = device_keys(&g, &h.user_id, &h.device_id).await;
    let h_otk = claim_otk(&g, &h.user_id, &h.device_id).await;
    gd.share_room_key(&g, &room, &h_keys, &h_otk).await;
    let body = format!("secret answer from {}", guest.label());
    let id = gd.send_encrypted(&g, &room, &body).await;
    let (got, keys) = receive_encrypted(&h, &mut hd, &room, &id).await;
    assert_eq!(got, body);
    assert_eq!(keys, 1, "{} got the room key {keys} times", h.user_id);
    no_more_to_device(&g).await;
    no_more_to_device(&h).await;

    // The guest signs in on a second device: the host's user is told (device_lists.changed,
    // through a device-list update over federation) and then sees both devices.
    let g2 = guest.client().login(&g.user_id).await;
    let mut g2d = OlmDevice::new();
    g2d.upload(&g2, 2).await;
    h.sync_until(
        &format!("{} in device_lists.changed", g.user_id),
        FED_WAIT,
        |v| {
            v["device_lists"]["changed"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|u| u == g.user_id.as_str())
                .then_some(())
        },
    )
    .await;
    let deadline = Instant::now() + FED_WAIT;
    loop {
        let devices = devices_of(&h, &g.user_id).await;
        if devices.get(&g2.device_id).is_some_and(device_keys_verify)
            && devices.get(&g.device_id).is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw the new device {} of {}: {devices}",
            h.user_id,
            g2.device_id,
            g.user_id
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_palabre_encrypted_chat() {
    let net = Net::new();
    let (a, b) = net.palabre_pair().await;
    encrypted_chat(&a, &b).await;
    encrypted_chat(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palabre_synapse_encrypted_chat() {
    let net = Net::new();
    let Some(syn) = net.synapse().await else {
        return;
    };
    let a = net.palabre("a", PalabreOptions::default()).await;
    encrypted_chat(&a, &syn).await;
    encrypted_chat(&syn, &a).await;
}
