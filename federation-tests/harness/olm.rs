//! An Olm/Megolm client device (vodozemac) over the client API of any server: device keys and
//! one-time keys, a room key shared with a peer device in an Olm to-device message, Megolm
//! room messages, and their decryption — what an end-to-end encrypted client does.

use reqwest::StatusCode;
use ruma::CanonicalJsonValue;
use serde_json::{json, Map, Value};
use vodozemac::{
    megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey},
    olm::{Account, OlmMessage, SessionConfig as OlmConfig},
    Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature,
};

use super::{client::enc, Session};

pub const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM: &str = "m.megolm.v1.aes-sha2";

fn canonical(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("signatures");
        m.remove("unsigned");
    }
    CanonicalJsonValue::try_from(v)
        .expect("canonical JSON")
        .to_string()
}

/// Checks a device's self-signature, as a client does before trusting its keys.
pub fn device_keys_verify(keys: &Value) -> bool {
    let (Some(user), Some(device)) = (keys["user_id"].as_str(), keys["device_id"].as_str()) else {
        return false;
    };
    let key_id = format!("ed25519:{device}");
    let (Some(public), Some(sig)) = (
        keys["keys"][&key_id].as_str(),
        keys["signatures"][user][&key_id].as_str(),
    ) else {
        return false;
    };
    let (Ok(public), Ok(sig)) = (
        Ed25519PublicKey::from_base64(public),
        Ed25519Signature::from_base64(sig),
    ) else {
        return false;
    };
    public.verify(canonical(keys).as_bytes(), &sig).is_ok()
}

/// One device of a session: its Olm account and the Megolm sessions it knows.
pub struct OlmDevice {
    pub account: Account,
    pub outbound: Option<GroupSession>,
    pub inbound: Vec<(String, InboundGroupSession)>,
}

impl Default for OlmDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl OlmDevice {
    pub fn new() -> Self {
        OlmDevice {
            account: Account::new(),
            outbound: None,
            inbound: vec![],
        }
    }

    fn sign(&self, s: &Session, obj: &mut Value) {
        let sig = self.account.sign(canonical(obj)).to_base64();
        obj["signatures"][&s.user_id][format!("ed25519:{}", s.device_id)] = json!(sig);
    }

    /// Uploads signed device keys and `n` signed one-time keys.
    pub async fn upload(&mut self, s: &Session, n: usize) {
        let mut keys = json!({
            "user_id": s.user_id,
            "device_id": s.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                format!("curve25519:{}", s.device_id): self.account.curve25519_key().to_base64(),
                format!("ed25519:{}", s.device_id): self.account.ed25519_key().to_base64(),
            },
        });
        self.sign(s, &mut keys);
        self.account.generate_one_time_keys(n);
        let mut otks = Map::new();
        for (id, key) in self.account.one_time_keys() {
            let mut k = json!({ "key": key.to_base64() });
            self.sign(s, &mut k);
            otks.insert(format!("signed_curve25519:{}", id.to_base64()), k);
        }
        self.account.mark_keys_as_published();
        let (st, v) = s
            .post(
                "/_matrix/client/v3/keys/upload",
                json!({ "device_keys": keys, "one_time_keys": otks }),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "keys/upload on {}: {v}",
            s.server_name()
        );
    }

    /// Shares this device's outbound Megolm session of `room` with `peer` (device keys as
    /// answered by /keys/query, one-time key claimed through /keys/claim), in an Olm-encrypted
    /// `m.room_key` to-device message.
    pub async fn share_room_key(&mut self, s: &Session, room: &str, peer: &Value, otk: &str) {
        let group = self
            .outbound
            .get_or_insert_with(|| GroupSession::new(SessionConfig::version_1()));
        let (session_id, session_key) = (group.session_id(), group.session_key().to_base64());
        let peer_user = peer["user_id"].as_str().expect("peer user_id");
        let peer_device = peer["device_id"].as_str().expect("peer device_id");
        let peer_curve = peer["keys"][format!("curve25519:{peer_device}")]
            .as_str()
            .expect("peer curve25519 key");
        let peer_ed = peer["keys"][format!("ed25519:{peer_device}")]
            .as_str()
            .expect("peer ed25519 key");
        let mut olm = self
            .account
            .create_outbound_session(
                OlmConfig::version_1(),
                Curve25519PublicKey::from_base64(peer_curve).expect("curve25519 key"),
                Curve25519PublicKey::from_base64(otk).expect("one-time key"),
            )
            .expect("Olm session");
        let payload = json!({
            "type": "m.room_key",
            "content": {
                "algorithm": MEGOLM,
                "room_id": room,
                "session_id": session_id,
                "session_key": session_key,
            },
            "sender": s.user_id,
            "sender_device": s.device_id,
            "keys": { "ed25519": self.account.ed25519_key().to_base64() },
            "recipient": peer_user,
            "recipient_keys": { "ed25519": peer_ed },
        });
        let msg = olm.encrypt(payload.to_string()).expect("Olm encryption");
        let content = json!({
            "algorithm": OLM,
            "sender_key": self.account.curve25519_key().to_base64(),
            "ciphertext": { peer_curve: serde_json::to_value(&msg).expect("Olm message") },
        });
        let (st, v) = s
            .put(
                &format!(
                    "/_matrix/client/v3/sendToDevice/m.room.encrypted/{}",
                    s.next_txn()
                ),
                json!({ "messages": { peer_user: { peer_device: content } } }),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "sendToDevice on {}: {v}",
            s.server_name()
        );
    }

    /// Sends a Megolm-encrypted text message with the outbound session; returns its event id.
    pub async fn send_encrypted(&mut self, s: &Session, room: &str, body: &str) -> String {
        let group = self.outbound.as_mut().expect("share the room key first");
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
            "device_id": s.device_id,
        });
        let (st, v) = s
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{}",
                    enc(room),
                    s.next_txn()
                ),
                content,
            )
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "send encrypted on {}: {v}",
            s.server_name()
        );
        v["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Decrypts the Olm to-device messages of a /sync response addressed to this device: the
    /// room keys become inbound Megolm sessions. Returns how many were received.
    pub fn receive_room_keys(&mut self, s: &Session, sync: &Value) -> usize {
        let my_curve = self.account.curve25519_key().to_base64();
        let mut n = 0;
        for ev in sync["to_device"]["events"].as_array().into_iter().flatten() {
            if ev["type"] != "m.room.encrypted" {
                continue;
            }
            let c = &ev["content"];
            let sender_key =
                Curve25519PublicKey::from_base64(c["sender_key"].as_str().expect("sender_key"))
                    .expect("sender key");
            let msg: OlmMessage = serde_json::from_value(c["ciphertext"][&my_curve].clone())
                .expect("a ciphertext for this device");
            let OlmMessage::PreKey(pre) = msg else {
                panic!("expected an Olm pre-key message: {ev}")
            };
            let res = self
                .account
                .create_inbound_session(OlmConfig::version_1(), sender_key, &pre)
                .expect("Olm decryption");
            let plain: Value = serde_json::from_slice(&res.plaintext).expect("JSON payload");
            assert_eq!(plain["type"], "m.room_key", "{plain}");
            assert_eq!(plain["sender"], ev["sender"], "{plain}");
            assert_eq!(plain["recipient"], s.user_id.as_str(), "{plain}");
            let key = SessionKey::from_base64(
                plain["content"]["session_key"]
                    .as_str()
                    .expect("session_key"),
            )
            .expect("session key");
            self.inbound.push((
                plain["content"]["room_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                InboundGroupSession::new(&key, SessionConfig::version_1()),
            ));
            n += 1;
        }
        n
    }

    /// Decrypts a Megolm room event with a known inbound session: its body, if it can.
    pub fn decrypt(&mut self, room: &str, ev: &Value) -> Option<String> {
        if ev["type"] != "m.room.encrypted" {
            return None;
        }
        let msg = MegolmMessage::from_base64(ev["content"]["ciphertext"].as_str()?).ok()?;
        let session_id = ev["content"]["session_id"].as_str()?;
        let (_, session) = self
            .inbound
            .iter_mut()
            .find(|(r, s)| r == room && s.session_id() == session_id)?;
        let plain = session.decrypt(&msg).ok()?;
        let v: Value = serde_json::from_slice(&plain.plaintext).ok()?;
        assert_eq!(v["room_id"], room, "the payload names its room");
        v["content"]["body"].as_str().map(str::to_owned)
    }
}
