//! End-to-end encryption through the HTTP API only, with real Olm/Megolm clients (vodozemac):
//! key upload and claim, Olm-encrypted to-device room keys, Megolm room messages, a late second
//! device, cross-signing, key backup, dehydrated devices.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use ruma::CanonicalJsonValue;
use serde_json::{json, Map, Value};
use vodozemac::{
    megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey},
    olm::{Account, OlmMessage, SessionConfig as OlmConfig},
    Curve25519PublicKey, Ed25519PublicKey, Ed25519SecretKey, Ed25519Signature,
};

use crate::common::*;

pub(crate) const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
pub(crate) const MEGOLM: &str = "m.megolm.v1.aes-sha2";

pub(crate) fn canonical(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("signatures");
        m.remove("unsigned");
    }
    CanonicalJsonValue::try_from(v).unwrap().to_string()
}

/// Checks a signature the way a client does before trusting a key.
pub(crate) fn verifies(obj: &Value, user: &str, key_id: &str, public: &str) -> bool {
    let Some(sig) = obj["signatures"][user][key_id].as_str() else {
        return false;
    };
    let key = Ed25519PublicKey::from_base64(public).unwrap();
    let sig = Ed25519Signature::from_base64(sig).unwrap();
    key.verify(canonical(obj).as_bytes(), &sig).is_ok()
}

/// A client device: a logged-in user and its Olm account.
pub(crate) struct Device {
    pub user: User,
    pub account: Account,
}

impl Device {
    pub(crate) fn new(user: User) -> Self {
        Self {
            user,
            account: Account::new(),
        }
    }

    pub(crate) fn key_id(&self) -> String {
        format!("ed25519:{}", self.user.device_id)
    }

    pub(crate) fn sign(&self, obj: &mut Value) {
        let sig = self.account.sign(canonical(obj)).to_base64();
        obj["signatures"][&self.user.user_id][self.key_id()] = json!(sig);
    }

    pub(crate) fn device_keys(&self) -> Value {
        let mut keys = json!({
            "user_id": self.user.user_id,
            "device_id": self.user.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                format!("curve25519:{}", self.user.device_id): self.account.curve25519_key().to_base64(),
                format!("ed25519:{}", self.user.device_id): self.account.ed25519_key().to_base64(),
            },
        });
        self.sign(&mut keys);
        keys
    }

    pub(crate) fn signed_key(&self, key: Curve25519PublicKey, fallback: bool) -> Value {
        let mut k = json!({ "key": key.to_base64() });
        if fallback {
            k["fallback"] = json!(true);
        }
        self.sign(&mut k);
        k
    }

    pub(crate) fn one_time_keys(&mut self, n: usize) -> Map<String, Value> {
        self.account.generate_one_time_keys(n);
        let out = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                (
                    format!("signed_curve25519:{}", id.to_base64()),
                    self.signed_key(key, false),
                )
            })
            .collect();
        self.account.mark_keys_as_published();
        out
    }

    pub(crate) fn fallback_key(&mut self) -> Map<String, Value> {
        self.account.generate_fallback_key();
        let out = self
            .account
            .fallback_key()
            .into_iter()
            .map(|(id, key)| {
                (
                    format!("signed_curve25519:{}", id.to_base64()),
                    self.signed_key(key, true),
                )
            })
            .collect();
        self.account.mark_keys_as_published();
        out
    }

    /// Uploads device keys and `n` one-time keys; returns the server's counts.
    pub(crate) async fn upload(&mut self, s: &TestServer, n: usize) -> Value {
        let body =
            json!({ "device_keys": self.device_keys(), "one_time_keys": self.one_time_keys(n) });
        let (st, v) = s
            .post(&self.user, "/_matrix/client/v3/keys/upload", body)
            .await;
        assert_eq!(st, StatusCode::OK, "keys/upload: {v}");
        v["one_time_key_counts"].clone()
    }

    /// Olm-encrypts an `m.room_key` for a peer device and sends it as a to-device message.
    async fn share_room_key(
        &self,
        s: &TestServer,
        peer: &Value,
        claimed_otk: &str,
        room: &str,
        group: &GroupSession,
        txn: &str,
    ) {
        let peer_user = peer["user_id"].as_str().unwrap();
        let peer_device = peer["device_id"].as_str().unwrap();
        let peer_curve = peer["keys"][format!("curve25519:{peer_device}")]
            .as_str()
            .unwrap();
        let peer_ed = peer["keys"][format!("ed25519:{peer_device}")]
            .as_str()
            .unwrap();
        let mut session = self
            .account
            .create_outbound_session(
                OlmConfig::version_1(),
                Curve25519PublicKey::from_base64(peer_curve).unwrap(),
                Curve25519PublicKey::from_base64(claimed_otk).unwrap(),
            )
            .unwrap();
        let payload = json!({
            "type": "m.room_key",
            "content": {
                "algorithm": MEGOLM,
                "room_id": room,
                "session_id": group.session_id(),
                "session_key": group.session_key().to_base64(),
            },
            "sender": self.user.user_id,
            "sender_device": self.user.device_id,
            "keys": { "ed25519": self.account.ed25519_key().to_base64() },
            "recipient": peer_user,
            "recipient_keys": { "ed25519": peer_ed },
        });
        let msg = session.encrypt(payload.to_string()).unwrap();
        let content = json!({
            "algorithm": OLM,
            "sender_key": self.account.curve25519_key().to_base64(),
            "ciphertext": { peer_curve: serde_json::to_value(&msg).unwrap() },
        });
        let (st, v) = s
            .put(
                &self.user,
                &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{txn}"),
                json!({ "messages": { peer_user: { peer_device: content } } }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "sendToDevice: {v}");
    }

    /// Megolm-encrypts a text message into the room.
    async fn send_encrypted(
        &self,
        s: &TestServer,
        room: &str,
        group: &mut GroupSession,
        txn: &str,
        body: &str,
    ) {
        let plain = json!({
            "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": body },
            "room_id": room,
        });
        let content = json!({
            "algorithm": MEGOLM,
            "sender_key": self.account.curve25519_key().to_base64(),
            "ciphertext": group.encrypt(plain.to_string()).to_base64(),
            "session_id": group.session_id(),
            "device_id": self.user.device_id,
        });
        let (st, v) = s
            .put(
                &self.user,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{txn}",
                    enc(room)
                ),
                content,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "send encrypted: {v}");
    }

    /// Decrypts the Olm to-device messages of a sync into Megolm inbound sessions.
    fn receive_room_keys(&mut self, sync: &Value) -> Vec<(String, InboundGroupSession)> {
        let my_curve = self.account.curve25519_key().to_base64();
        let mut out = vec![];
        for ev in sync["to_device"]["events"].as_array().unwrap() {
            if ev["type"] != "m.room.encrypted" {
                continue;
            }
            let c = &ev["content"];
            let sender_key =
                Curve25519PublicKey::from_base64(c["sender_key"].as_str().unwrap()).unwrap();
            let msg: OlmMessage = serde_json::from_value(c["ciphertext"][&my_curve].clone())
                .expect("a ciphertext for this device");
            let OlmMessage::PreKey(pre) = msg else {
                panic!("expected a pre-key message")
            };
            let res = self
                .account
                .create_inbound_session(OlmConfig::version_1(), sender_key, &pre)
                .expect("Olm decryption");
            let plain: Value = serde_json::from_slice(&res.plaintext).unwrap();
            assert_eq!(plain["type"], "m.room_key");
            assert_eq!(plain["sender"], ev["sender"]);
            assert_eq!(plain["recipient"], self.user.user_id);
            let key =
                SessionKey::from_base64(plain["content"]["session_key"].as_str().unwrap()).unwrap();
            out.push((
                plain["content"]["room_id"].as_str().unwrap().to_owned(),
                InboundGroupSession::new(&key, SessionConfig::version_1()),
            ));
        }
        out
    }
}

/// Decrypts every Megolm event of a room's sync timeline with the session; returns the bodies.
fn decrypt_timeline(sync: &Value, room: &str, session: &mut InboundGroupSession) -> Vec<String> {
    let mut out = vec![];
    for ev in sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if ev["type"] != "m.room.encrypted" || ev["content"]["session_id"] != session.session_id() {
            continue;
        }
        let msg = MegolmMessage::from_base64(ev["content"]["ciphertext"].as_str().unwrap());
        if let Ok(plain) = session.decrypt(&msg.unwrap()) {
            let v: Value = serde_json::from_slice(&plain.plaintext).unwrap();
            assert_eq!(v["room_id"], room, "the payload names its room");
            out.push(v["content"]["body"].as_str().unwrap().to_owned());
        }
    }
    out
}

async fn query(s: &TestServer, who: &User, target: &str) -> Value {
    let (st, v) = s
        .post(
            who,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { target: [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "keys/query: {v}");
    v
}

/// Claims one signed_curve25519 key of a device; returns (key id, key object).
async fn claim(s: &TestServer, who: &User, user: &str, device: &str) -> (String, Value) {
    let (st, v) = s
        .post(
            who,
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { user: { device: "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "keys/claim: {v}");
    let keys = v["one_time_keys"][user][device].as_object().unwrap();
    let (id, k) = keys.iter().next().expect("a key");
    (id.clone(), k.clone())
}

async fn olm_megolm_between_clients(b: Backend) {
    let s = TestServer::start(b).await;
    let mut alice = Device::new(s.register("alice").await);
    let mut bob = Device::new(s.register("bob").await);
    assert_eq!(alice.upload(&s, 5).await["signed_curve25519"], 5);
    assert_eq!(bob.upload(&s, 5).await["signed_curve25519"], 5);

    // Private rooms are encrypted from creation (encryption_by_default = "invite").
    let room = s
        .create_room(&alice.user, json!({ "preset": "private_chat" }))
        .await;
    let (st, v) = s
        .get(
            &alice.user,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(
        (st, v["algorithm"].clone()),
        (StatusCode::OK, json!(MEGOLM))
    );
    s.invite(&alice.user, &room, &bob.user).await;
    s.join(&bob.user, &room).await;
    let bob_t0 = s.sync(&bob.user, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_t0 = s.sync(&alice.user, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // alice finds bob's device, checks its self-signature, claims a one-time key.
    let q = query(&s, &alice.user, &bob.user.user_id).await;
    let bob_keys = q["device_keys"][&bob.user.user_id][&bob.user.device_id].clone();
    let bob_ed = bob_keys["keys"][bob.key_id()].as_str().unwrap();
    assert!(verifies(
        &bob_keys,
        &bob.user.user_id,
        &bob.key_id(),
        bob_ed
    ));
    let (_, otk) = claim(&s, &alice.user, &bob.user.user_id, &bob.user.device_id).await;
    assert!(verifies(&otk, &bob.user.user_id, &bob.key_id(), bob_ed));

    // Room key by Olm to-device, then a Megolm message in the room.
    let mut group = GroupSession::new(SessionConfig::version_1());
    alice
        .share_room_key(
            &s,
            &bob_keys,
            otk["key"].as_str().unwrap(),
            &room,
            &group,
            "k1",
        )
        .await;
    alice
        .send_encrypted(&s, &room, &mut group, "m1", "the secret plan")
        .await;

    // The server stores only ciphertext.
    let (_, msgs) = s
        .get(
            &alice.user,
            &format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)),
        )
        .await;
    assert!(!msgs.to_string().contains("secret plan"));

    let sync1 = s.sync(&bob.user, Some(&bob_t0), 5_000).await;
    assert_eq!(sync1["device_one_time_keys_count"]["signed_curve25519"], 4);
    let mut sessions = bob.receive_room_keys(&sync1);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].0, room);
    assert_eq!(
        decrypt_timeline(&sync1, &room, &mut sessions[0].1),
        vec!["the secret plan"]
    );

    // A retried sync gets the message again; the next one acknowledges and deletes it.
    let again = s.sync(&bob.user, Some(&bob_t0), 0).await;
    assert_eq!(again["to_device"]["events"], sync1["to_device"]["events"]);
    let t1 = sync1["next_batch"].as_str().unwrap();
    let after = s.sync(&bob.user, Some(t1), 0).await;
    assert_eq!(after["to_device"]["events"], json!([]));
    let replay = s.sync(&bob.user, Some(&bob_t0), 0).await;
    assert_eq!(
        replay["to_device"]["events"],
        json!([]),
        "acknowledged messages are gone"
    );

    // The same transaction id again is a no-op.
    alice
        .share_room_key(
            &s,
            &bob_keys,
            otk["key"].as_str().unwrap(),
            &room,
            &group,
            "k1",
        )
        .await;
    let none = s.sync(&bob.user, Some(t1), 0).await;
    assert_eq!(none["to_device"]["events"], json!([]));

    // bob's second device arrives later: alice sees the device-list change and shares the key.
    let (st, v) = s
        .login(password(&bob.user.user_id, "correct horse 1"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut bob2 = Device::new(User {
        user_id: bob.user.user_id.clone(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    });
    bob2.upload(&s, 3).await;
    let bob2_t0 = s.sync(&bob2.user, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_sync = s.sync(&alice.user, Some(&alice_t0), 5_000).await;
    assert!(
        alice_sync["device_lists"]["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(bob.user.user_id)),
        "{}",
        alice_sync["device_lists"]
    );
    let q = query(&s, &alice.user, &bob.user.user_id).await;
    let devices = q["device_keys"][&bob.user.user_id].as_object().unwrap();
    assert_eq!(devices.len(), 2);
    let bob2_keys = devices[&bob2.user.device_id].clone();
    let (_, otk2) = claim(&s, &alice.user, &bob.user.user_id, &bob2.user.device_id).await;
    alice
        .share_room_key(
            &s,
            &bob2_keys,
            otk2["key"].as_str().unwrap(),
            &room,
            &group,
            "k2",
        )
        .await;
    alice
        .send_encrypted(&s, &room, &mut group, "m2", "second message")
        .await;
    let sync2 = s.sync(&bob2.user, Some(&bob2_t0), 5_000).await;
    let mut sessions2 = bob2.receive_room_keys(&sync2);
    assert_eq!(sessions2.len(), 1);
    assert_eq!(
        decrypt_timeline(&sync2, &room, &mut sessions2[0].1),
        vec!["second message"]
    );
    // bob's first device decrypts it too with the session it already has.
    let sync3 = s.sync(&bob.user, Some(t1), 5_000).await;
    assert_eq!(
        decrypt_timeline(&sync3, &room, &mut sessions[0].1),
        vec!["second message"]
    );

    // Removing bob2 removes its keys and tells alice.
    let alice_t1 = alice_sync["next_batch"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/devices/{}", bob2.user.device_id);
    let (st, v) = s
        .call(
            Method::DELETE,
            &path,
            Some(&bob.user.token),
            Some(json!({ "auth": password(&bob.user.user_id, "correct horse 1") })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let q = query(&s, &alice.user, &bob.user.user_id).await;
    assert_eq!(
        q["device_keys"][&bob.user.user_id]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    let alice_sync = s.sync(&alice.user, Some(&alice_t1), 5_000).await;
    assert!(alice_sync["device_lists"]["changed"]
        .as_array()
        .unwrap()
        .contains(&json!(bob.user.user_id)));
    let (st, _) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { &bob.user.user_id: { &bob2.user.device_id: "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

async fn key_upload_rules(b: Backend) {
    let s = TestServer::start(b).await;
    let mut alice = Device::new(s.register("alice").await);
    let user = alice.user.clone();
    let up = |body: Value| {
        let user = user.clone();
        let s = &s;
        async move { s.post(&user, "/_matrix/client/v3/keys/upload", body).await }
    };
    // Another user's id, a forged signature, a missing signature: refused.
    let mut other = alice.device_keys();
    other["user_id"] = json!("@mallory:localhost");
    assert_eq!(
        up(json!({ "device_keys": other })).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut forged = alice.device_keys();
    forged["algorithms"] = json!([MEGOLM]);
    let (st, v) = up(json!({ "device_keys": forged })).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::BAD_REQUEST, json!("M_INVALID_PARAM"))
    );
    let mut unsigned = alice.device_keys();
    unsigned.as_object_mut().unwrap().remove("signatures");
    assert_eq!(
        up(json!({ "device_keys": unsigned })).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        up(json!({ "device_keys": 3 })).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        up(json!({ "one_time_keys": { "nocolon": "x" } })).await.0,
        StatusCode::BAD_REQUEST
    );
    let q = query(&s, &alice.user, &alice.user.user_id).await;
    assert_eq!(q["device_keys"][&alice.user.user_id], json!({}));

    // Valid keys; the same keys again are fine; different keys for the device are refused.
    assert_eq!(alice.upload(&s, 2).await["signed_curve25519"], 2);
    let (st, _) = up(json!({ "device_keys": alice.device_keys() })).await;
    assert_eq!(st, StatusCode::OK);
    let impostor = Device::new(alice.user.clone());
    let (st, v) = up(json!({ "device_keys": impostor.device_keys() })).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::BAD_REQUEST, json!("M_INVALID_PARAM"))
    );
    let q = query(&s, &alice.user, &alice.user.user_id).await;
    assert_eq!(
        q["device_keys"][&alice.user.user_id][&alice.user.device_id]["keys"][alice.key_id()],
        json!(alice.account.ed25519_key().to_base64())
    );

    // A one-time key id reused with another key is refused; the same key again is not.
    let otks = alice.one_time_keys(1);
    let (st, v) = up(json!({ "one_time_keys": otks.clone() })).await;
    assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 3, "{st} {v}");
    let (st, _) = up(json!({ "one_time_keys": otks.clone() })).await;
    assert_eq!(st, StatusCode::OK);
    let mut changed = otks.clone();
    for v in changed.values_mut() {
        v["key"] = json!("AAAA");
    }
    assert_eq!(
        up(json!({ "one_time_keys": changed })).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, v) = up(json!({})).await;
    assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 3);

    // Remote users are reported in failures, not silently missing.
    let (st, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "@x:elsewhere.example": [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["failures"]["elsewhere.example"].is_object(), "{v}");
    let (st, _) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "not a user": [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Oversized to-device messages are refused.
    let big = "x".repeat(70_000);
    let (st, v) = s
        .put(
            &alice.user,
            "/_matrix/client/v3/sendToDevice/m.test/big",
            json!({ "messages": { &alice.user.user_id: { "*": { "data": big } } } }),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("M_TOO_LARGE"))
    );
    s.stop().await;
}

async fn concurrent_claims(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mut bob = Device::new(s.register("bob").await);
    bob.upload(&s, 20).await;
    let fallback = bob.fallback_key();
    let fallback_key = fallback.values().next().unwrap().clone();
    let (st, _) = s
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/upload",
            json!({ "fallback_keys": fallback }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let sync = s.sync(&bob.user, None, 0).await;
    assert_eq!(
        sync["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    let claims = (0..50).map(|_| claim(&s, &alice, &bob.user.user_id, &bob.user.device_id));
    let results = futures::future::join_all(claims).await;
    let mut otks = HashSet::new();
    let mut fallbacks = 0;
    for (id, key) in &results {
        // Key ids of one-time and fallback keys come from separate counters: tell them apart
        // by the fallback flag.
        if key["fallback"] == true {
            fallbacks += 1;
            assert_eq!(*key, fallback_key);
        } else {
            assert!(
                otks.insert(id.clone()),
                "one-time key {id} handed out twice"
            );
        }
    }
    assert_eq!(otks.len(), 20, "every one-time key handed out once");
    assert_eq!(fallbacks, 30, "the fallback key after exhaustion");
    let sync = s.sync(&bob.user, None, 0).await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]));
    s.stop().await;
}

/// A cross-signing key object signed by `signer` (secret key, public base64).
pub(crate) fn cross_key(
    user: &str,
    usage: &str,
    key: &Ed25519SecretKey,
    signer: Option<&Ed25519SecretKey>,
) -> Value {
    let public = key.public_key().to_base64();
    let mut v = json!({
        "user_id": user,
        "usage": [usage],
        "keys": { format!("ed25519:{public}"): public },
    });
    if let Some(signer) = signer {
        let sp = signer.public_key().to_base64();
        v["signatures"][user][format!("ed25519:{sp}")] =
            json!(signer.sign(canonical(&v).as_bytes()).to_base64());
    }
    v
}

pub(crate) fn sign_with(obj: &Value, user: &str, key: &Ed25519SecretKey) -> Value {
    let mut obj = obj.clone();
    obj.as_object_mut().unwrap().remove("unsigned");
    let kid = format!("ed25519:{}", key.public_key().to_base64());
    let sig = key.sign(canonical(&obj).as_bytes()).to_base64();
    obj["signatures"] = json!({ user: { kid: sig } });
    obj
}

async fn cross_signing(b: Backend) {
    let s = TestServer::start(b).await;
    let mut alice = Device::new(s.register("alice").await);
    let mut bob = Device::new(s.register("bob").await);
    alice.upload(&s, 1).await;
    bob.upload(&s, 1).await;
    let room = s.create_room(&alice.user, json!({})).await;
    s.invite(&alice.user, &room, &bob.user).await;
    s.join(&bob.user, &room).await;
    let bob_t0 = s.sync(&bob.user, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let a = alice.user.user_id.clone();
    let master = Ed25519SecretKey::new();
    let ssk = Ed25519SecretKey::new();
    let usk = Ed25519SecretKey::new();
    let body = json!({
        "master_key": cross_key(&a, "master", &master, None),
        "self_signing_key": cross_key(&a, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&a, "user_signing", &usk, Some(&master)),
    });
    // A self-signing key not signed by the master key is refused.
    let mut bad = body.clone();
    bad["self_signing_key"] = cross_key(&a, "self_signing", &ssk, Some(&usk));
    let (st, _) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            bad,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // First upload: no UIA needed (no master key yet).
    let (st, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            body.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sync = s.sync(&bob.user, Some(&bob_t0), 5_000).await;
    assert!(sync["device_lists"]["changed"]
        .as_array()
        .unwrap()
        .contains(&json!(a)));

    let q = query(&s, &bob.user, &a).await;
    assert_eq!(q["master_keys"][&a]["keys"], body["master_key"]["keys"]);
    assert_eq!(
        q["self_signing_keys"][&a]["keys"],
        body["self_signing_key"]["keys"]
    );
    assert!(
        q["user_signing_keys"].get(&a).is_none(),
        "user-signing key only to its owner"
    );
    let own = query(&s, &alice.user, &a).await;
    assert_eq!(
        own["user_signing_keys"][&a]["keys"],
        body["user_signing_key"]["keys"]
    );

    // alice's self-signing key signs her device: accepted and visible to bob.
    let device = q["device_keys"][&a][&alice.user.device_id].clone();
    let signed = sign_with(&device, &a, &ssk);
    let (st, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &a: { &alice.user.device_id: signed } }),
        )
        .await;
    assert_eq!((st, v["failures"].clone()), (StatusCode::OK, json!({})));
    let ssk_id = format!("ed25519:{}", ssk.public_key().to_base64());
    let q = query(&s, &bob.user, &a).await;
    let dev = &q["device_keys"][&a][&alice.user.device_id];
    assert!(
        verifies(dev, &a, &ssk_id, &ssk.public_key().to_base64()),
        "{dev}"
    );
    assert!(verifies(
        dev,
        &a,
        &alice.key_id(),
        &alice.account.ed25519_key().to_base64()
    ));

    // A forged signature (another key claiming to be the self-signing key) is reported and not stored.
    let mut forged = sign_with(&device, &a, &Ed25519SecretKey::new());
    let sig = forged["signatures"][&a]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    forged["signatures"] = json!({ &a: { &ssk_id: sig } });
    let (st, v) = s
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &bob.user.user_id: { &bob.user.device_id: forged.clone() } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        v["failures"][&bob.user.user_id][&bob.user.device_id]["errcode"].is_string(),
        "{v}"
    );
    let (_, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &a: { &alice.user.device_id: forged } }),
        )
        .await;
    assert_eq!(
        v["failures"][&a][&alice.user.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{v}"
    );

    // bob cross-signs with his own keys, then signs alice's master key with his user-signing key:
    // only bob sees that signature.
    let b_id = bob.user.user_id.clone();
    let (bm, bs, bu) = (
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
    );
    let (st, _) = s
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            json!({
                "master_key": cross_key(&b_id, "master", &bm, None),
                "self_signing_key": cross_key(&b_id, "self_signing", &bs, Some(&bm)),
                "user_signing_key": cross_key(&b_id, "user_signing", &bu, Some(&bm)),
            }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let alice_master = q["master_keys"][&a].clone();
    let master_pub = master.public_key().to_base64();
    let before_sig = |u: &User| {
        let (s, u) = (&s, u.clone());
        async move {
            s.sync(&u, None, 0).await["next_batch"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (bob_t1, alice_t1) = (before_sig(&bob.user).await, before_sig(&alice.user).await);
    let (st, v) = s
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &a: { &master_pub: sign_with(&alice_master, &b_id, &bu) } }),
        )
        .await;
    assert_eq!((st, v["failures"].clone()), (StatusCode::OK, json!({})));
    // bob's devices are told to re-read alice's keys (and then show her verified); alice's
    // are not told that her keys changed (the signature is bob's private business).
    let changed = |v: &Value| v["device_lists"]["changed"].clone();
    let bob_sync = s.sync(&bob.user, Some(&bob_t1), 0).await;
    assert!(
        changed(&bob_sync).as_array().unwrap().contains(&json!(a)),
        "{bob_sync}"
    );
    let alice_sync = s.sync(&alice.user, Some(&alice_t1), 0).await;
    assert!(
        !changed(&alice_sync)
            .as_array()
            .is_some_and(|c| c.contains(&json!(a))),
        "{alice_sync}"
    );
    let (st, v) = s
        .get(
            &bob.user,
            &format!(
                "/_matrix/client/v3/keys/changes?from={}&to={}",
                enc(&bob_t1),
                enc(bob_sync["next_batch"].as_str().unwrap())
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["changed"].as_array().unwrap().contains(&json!(a)), "{v}");
    let bu_id = format!("ed25519:{}", bu.public_key().to_base64());
    let seen_by_bob = query(&s, &bob.user, &a).await;
    assert!(verifies(
        &seen_by_bob["master_keys"][&a],
        &b_id,
        &bu_id,
        &bu.public_key().to_base64()
    ));
    let seen_by_alice = query(&s, &alice.user, &a).await;
    assert!(seen_by_alice["master_keys"][&a]["signatures"]
        .get(&b_id)
        .is_none());

    // Replacing the master key needs the password; the same keys again do not.
    let (st, _) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            body.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let master2 = Ed25519SecretKey::new();
    let body2 = json!({ "master_key": cross_key(&a, "master", &master2, None) });
    let (st, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            body2.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v["flows"].is_array(), "{v}");
    let (st, v) = s
        .post(
            &alice.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            with(body2, json!({ "auth": with(password(&a, "correct horse 1"), json!({ "session": v["session"] })) })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let q = query(&s, &alice.user, &a).await;
    assert_eq!(
        q["master_keys"][&a]["keys"][format!("ed25519:{}", master2.public_key().to_base64())],
        json!(master2.public_key().to_base64())
    );
    s.stop().await;
}

async fn key_backup(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let (st, v) = s.get(&u, "/_matrix/client/v3/room_keys/version").await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
    );
    let algo = "m.megolm_backup.v1.curve25519-aes-sha2";
    let (st, v) = s
        .post(
            &u,
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": algo, "auth_data": { "public_key": "abcdef" } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let version = v["version"].as_str().unwrap().to_owned();
    let (_, info) = s.get(&u, "/_matrix/client/v3/room_keys/version").await;
    assert_eq!(info["version"], json!(version));
    assert_eq!(info["count"], 0);
    let etag0 = info["etag"].clone();

    let key = |fmi: i64, fwd: i64, verified: bool, tag: &str| {
        json!({
            "first_message_index": fmi,
            "forwarded_count": fwd,
            "is_verified": verified,
            "session_data": { "ephemeral": tag, "ciphertext": tag, "mac": tag },
        })
    };
    let room = "!r:localhost";
    let keys_path =
        |suffix: &str, v: &str| format!("/_matrix/client/v3/room_keys/keys{suffix}?version={v}");
    let (st, v) = s
        .put(
            &u,
            &keys_path("", &version),
            json!({ "rooms": { room: { "sessions": { "s1": key(5, 1, false, "first"), "s2": key(0, 0, false, "two") } } } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2);
    let etag1 = v["etag"].clone();
    assert_ne!(etag1, etag0);

    // A worse copy (later index) changes nothing; a verified one replaces it.
    let s1 = format!("/{}/s1", enc(room));
    let (_, v) = s
        .put(&u, &keys_path(&s1, &version), key(10, 0, false, "worse"))
        .await;
    assert_eq!(
        (v["count"].clone(), v["etag"].clone()),
        (json!(2), etag1.clone())
    );
    let (_, got) = s.get(&u, &keys_path(&s1, &version)).await;
    assert_eq!(got["session_data"]["ciphertext"], "first");
    let (_, v) = s
        .put(&u, &keys_path(&s1, &version), key(3, 0, false, "lower"))
        .await;
    assert_ne!(v["etag"], etag1);
    let (_, v) = s
        .put(&u, &keys_path(&s1, &version), key(3, 0, true, "verified"))
        .await;
    let (_, got) = s.get(&u, &keys_path(&s1, &version)).await;
    assert_eq!(got["session_data"]["ciphertext"], "verified");
    let (_, _) = s
        .put(
            &u,
            &keys_path(&s1, &version),
            key(0, 0, false, "unverified but earlier"),
        )
        .await;
    let (_, got) = s.get(&u, &keys_path(&s1, &version)).await;
    assert_eq!(
        got["session_data"]["ciphertext"], "verified",
        "verified beats index"
    );
    let etag_now = v["etag"].clone();

    // Room-level put and reads at all three granularities.
    let room_path = format!("/{}", enc(room));
    let (_, v) = s
        .put(
            &u,
            &keys_path(&room_path, &version),
            json!({ "sessions": { "s3": key(0, 0, false, "three") } }),
        )
        .await;
    assert_eq!(v["count"], 3);
    let (_, all) = s.get(&u, &keys_path("", &version)).await;
    assert_eq!(all["rooms"][room]["sessions"].as_object().unwrap().len(), 3);
    let (_, in_room) = s.get(&u, &keys_path(&room_path, &version)).await;
    assert_eq!(
        in_room["sessions"]["s2"]["session_data"]["ciphertext"],
        "two"
    );
    let (st, _) = s
        .get(&u, &keys_path(&format!("{room_path}/nope"), &version))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, info) = s
        .get(
            &u,
            &format!("/_matrix/client/v3/room_keys/version/{version}"),
        )
        .await;
    assert_eq!(info["count"], 3);
    assert_ne!(info["etag"], etag_now);

    // A newer version: the old one is read-only, writes to it are refused with the current one.
    let (_, v) = s
        .post(
            &u,
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": algo, "auth_data": { "public_key": "zz" } }),
        )
        .await;
    let v2 = v["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, version);
    let (st, v) = s
        .put(&u, &keys_path(&s1, &version), key(0, 0, true, "x"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(v["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(v["current_version"], json!(v2));
    let (st, _) = s.get(&u, &keys_path("", &version)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&u, &keys_path("", "999")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Update the auth data of v2; the algorithm cannot change.
    let (st, _) = s
        .put(
            &u,
            &format!("/_matrix/client/v3/room_keys/version/{v2}"),
            json!({ "algorithm": algo, "auth_data": { "public_key": "yy" }, "version": v2 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .put(
            &u,
            &format!("/_matrix/client/v3/room_keys/version/{v2}"),
            json!({ "algorithm": "other", "auth_data": {} }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, cur) = s.get(&u, "/_matrix/client/v3/room_keys/version").await;
    assert_eq!(cur["auth_data"]["public_key"], "yy");

    // Deletes: a session of v1 is not writable (old version) but v1 keys go with v1.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_matrix/client/v3/room_keys/version/{v2}"),
            Some(&u.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, cur) = s.get(&u, "/_matrix/client/v3/room_keys/version").await;
    assert_eq!(
        cur["version"],
        json!(version),
        "the previous version is current again"
    );
    let (st, v) = s
        .call(
            Method::DELETE,
            &keys_path(&s1, &version),
            Some(&u.token),
            None,
        )
        .await;
    assert_eq!((st, v["count"].clone()), (StatusCode::OK, json!(2)));
    let (_, v) = s
        .call(
            Method::DELETE,
            &keys_path("", &version),
            Some(&u.token),
            None,
        )
        .await;
    assert_eq!(v["count"], 0);
    let (st, _) = s
        .put(
            &u,
            &keys_path("", &version),
            json!({ "rooms": { room: { "sessions": { "s": { "first_message_index": "no" } } } } }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

async fn dehydrated_device(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let base = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    let (st, _) = s.get(&bob, base).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let mut dehydrated = Device::new(User {
        device_id: "DEHYDRATED1".into(),
        ..bob.clone()
    });
    let body = json!({
        "device_id": "DEHYDRATED1",
        "device_data": { "algorithm": "m.dehydration.v1.olm", "device_pickle": "opaque" },
        "initial_device_display_name": "Dehydrated",
        "device_keys": dehydrated.device_keys(),
        "one_time_keys": dehydrated.one_time_keys(2),
    });
    let (st, v) = s.put(&bob, base, body).await;
    assert_eq!(
        (st, v["device_id"].clone()),
        (StatusCode::OK, json!("DEHYDRATED1")),
        "{v}"
    );
    let (_, v) = s.get(&bob, base).await;
    assert_eq!(v["device_data"]["device_pickle"], "opaque");
    let q = query(&s, &alice, &bob.user_id).await;
    assert!(
        q["device_keys"][&bob.user_id]["DEHYDRATED1"].is_object(),
        "{q}"
    );

    // Messages for the dehydrated device wait for it, page by page.
    for i in 0..3 {
        let (st, _) = s
            .put(
                &alice,
                &format!("/_matrix/client/v3/sendToDevice/m.test/t{i}"),
                json!({ "messages": { &bob.user_id: { "DEHYDRATED1": { "n": i } } } }),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let events = format!("{base}/DEHYDRATED1/events");
    let (st, v) = s.post(&bob, &events, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![0, 1, 2]);
    let (_, v) = s
        .post(&bob, &events, json!({ "next_batch": v["next_batch"] }))
        .await;
    assert_eq!(v["events"], json!([]));
    let (st, _) = s
        .post(&alice, &format!("{base}/DEHYDRATED1/events"), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, v) = s.call(Method::DELETE, base, Some(&bob.token), None).await;
    assert_eq!(
        (st, v["device_id"].clone()),
        (StatusCode::OK, json!("DEHYDRATED1"))
    );
    let (st, _) = s.get(&bob, base).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let q = query(&s, &alice, &bob.user_id).await;
    assert!(q["device_keys"][&bob.user_id].get("DEHYDRATED1").is_none());
    s.stop().await;
}

fn list(sync: &Value, field: &str) -> Vec<String> {
    let mut v: Vec<String> = sync["device_lists"][field]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn device_list_tracking(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mut bob = Device::new(s.register("bob").await);
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.user, &room).await;
    let token = |v: &Value| v["next_batch"].as_str().unwrap().to_owned();
    let a0 = token(&s.sync(&alice, None, 0).await);
    let c0 = token(&s.sync(&carol, None, 0).await);

    // bob's new keys: alice (shares a room) is told, carol (does not) is not.
    bob.upload(&s, 1).await;
    let a1 = s.sync(&alice, Some(&a0), 5_000).await;
    assert_eq!(list(&a1, "changed"), vec![bob.user.user_id.clone()]);
    let c1 = s.sync(&carol, Some(&c0), 0).await;
    assert_eq!(list(&c1, "changed"), Vec::<String>::new());
    let (st, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/keys/changes?from={}&to={}",
                enc(&a0),
                enc(a1["next_batch"].as_str().unwrap())
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["changed"], json!([bob.user.user_id]));

    // carol joins: every member is new to her; alice is told about carol.
    s.join(&carol, &room).await;
    let c2 = s.sync(&carol, Some(&token(&c1)), 5_000).await;
    assert_eq!(
        list(&c2, "changed"),
        vec![
            alice.user_id.clone(),
            bob.user.user_id.clone(),
            carol.user_id.clone()
        ]
    );
    let a2 = s.sync(&alice, Some(&token(&a1)), 5_000).await;
    assert_eq!(list(&a2, "changed"), vec![carol.user_id.clone()]);

    // bob leaves the only shared room: he is in alice's `left`.
    let (st, _) = s
        .post(
            &bob.user,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let a3 = s.sync(&alice, Some(&token(&a2)), 5_000).await;
    assert_eq!(list(&a3, "left"), vec![bob.user.user_id.clone()]);
    assert!(!list(&a3, "changed").contains(&bob.user.user_id));
    s.stop().await;
}

crate::both_backends!(
    device_list_tracking,
    olm_megolm_between_clients,
    key_upload_rules,
    concurrent_claims,
    cross_signing,
    key_backup,
    dehydrated_device
);
