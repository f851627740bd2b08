//! A PDU from another server, as a federation transaction hands it over: the checks on receipt
//! (format, size, NUL, canonical JSON, event id, required signatures), then, signed by every
//! required server with a key this target knows so that the signature check passes, the
//! content-hash check, the parse into an auth event, the auth rules against its own auth events
//! (step 4) and against a room's state (step 5), and the Tchap access rules.
//!
//! Input: one byte choosing the room version (low three bits) and whether to add to the content
//! after signing (bit 3: the content hash then fails and the event is kept redacted), then the
//! PDU's JSON.

#![no_main]

use std::{collections::HashMap, sync::Arc, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use palabre::{
    config::TchapConfig,
    services::{
        federation::pdu::{prepare_pdu, verify_pdu},
        policy::{access_rules, Policy},
        rooms::{
            auth_events::check_auth_events,
            pdu::{belongs_to, Pdu},
            resolve::State,
            version,
        },
    },
};
use ruma::{
    canonical_json::redact,
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{
        hash_and_sign_event, required_server_signatures_to_verify_event, sign_event,
        Ed25519KeyPair, PublicKeyMap,
    },
    state_res, CanonicalJsonObject, CanonicalJsonValue, OwnedEventId,
};
use serde_json::{json, Value};

/// The key every required server signs with here.
const KEY_ID: &str = "ed25519:fuzz";

/// A room as the auth rules see it: its events by id and its current state.
struct Room {
    rules: RoomVersionRules,
    v12: bool,
    create: Arc<Pdu>,
    known: HashMap<OwnedEventId, Arc<Pdu>>,
    state: State,
}

struct Fixture {
    pair: Ed25519KeyPair,
    public: Base64,
    rooms: Vec<Room>,
    policy: Policy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // A fixed PKCS#8 (v1) Ed25519 key, so that a crashing input replays the same way.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(1..=32u8);
        let pair = Ed25519KeyPair::from_der(&der, "fuzz".into()).expect("fixed key");
        let public = Base64::new(pair.public_key().to_vec());
        let rooms = version::SUPPORTED.iter().map(|v| room(v)).collect();
        let policy = Policy::new(
            "a.test",
            Some(&TchapConfig {
                externals_servers: vec!["ext.test".into()],
                ..Default::default()
            }),
        )
        .expect("policy");
        Fixture {
            pair,
            public,
            rooms,
            policy,
        }
    })
}

/// Alice's room on a.test: created, joined, power levels, public join rule, Tchap access rule.
fn room(v: &str) -> Room {
    let (_, rules) = version::parse(v).expect("supported version");
    let v12 = rules.authorization.room_create_event_id_as_room_id;
    let room_id = if v12 { "!create" } else { "!room:a.test" };
    let ev = |id: &str, kind: &str, key: &str, content: Value, auth: &[&str], depth: u64| {
        let mut j = json!({
            "type": kind, "state_key": key, "sender": "@alice:a.test", "content": content,
            "room_id": room_id, "origin_server_ts": 1, "depth": depth,
            "prev_events": [], "auth_events": auth,
        });
        if v12 && kind == "m.room.create" {
            j.as_object_mut().unwrap().remove("room_id");
        }
        Pdu::parse(id, &j.to_string()).expect("fixture event")
    };
    let create_auth: &[&str] = if v12 { &[] } else { &["$create"] };
    let create = ev(
        "$create",
        "m.room.create",
        "",
        json!({ "creator": "@alice:a.test", "room_version": v }),
        &[],
        1,
    );
    let join = ev(
        "$join",
        "m.room.member",
        "@alice:a.test",
        json!({ "membership": "join" }),
        create_auth,
        2,
    );
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut a: Vec<&str> = create_auth.to_vec();
        a.extend(extra);
        a
    };
    let pl = ev(
        "$pl",
        "m.room.power_levels",
        "",
        // From room version 12 on the creator holds power without being listed.
        json!({ "users": if v12 { json!({}) } else { json!({ "@alice:a.test": 100 }) },
                "users_default": 0, "events_default": 0, "state_default": 50, "invite": 0,
                "kick": 50, "ban": 50, "redact": 50 }),
        &with(&["$join"]),
        3,
    );
    let jr = ev(
        "$jr",
        "m.room.join_rules",
        "",
        json!({ "join_rule": "public" }),
        &with(&["$join", "$pl"]),
        4,
    );
    let ar = ev(
        "$ar",
        "im.vector.room.access_rules",
        "",
        json!({ "rule": "restricted" }),
        &with(&["$join", "$pl"]),
        5,
    );
    let all = [create.clone(), join, pl, jr, ar];
    let known = all
        .iter()
        .map(|p| (p.event_id.clone(), p.clone()))
        .collect();
    let state = all
        .iter()
        .map(|p| {
            (
                (
                    p.kind.to_string().as_str().into(),
                    p.state_key.clone().unwrap_or_default(),
                ),
                p.clone(),
            )
        })
        .collect();
    Room {
        rules,
        v12,
        create,
        known,
        state,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, json)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let room = &f.rooms[usize::from(head & 7) % f.rooms.len()];
    let tamper = head & 8 != 0;
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };

    // As sent: the sender's signatures cannot match this target's key (nor any other).
    let keys_for = |signers: &mut dyn Iterator<Item = String>| -> PublicKeyMap {
        signers
            .map(|s| (s, [(KEY_ID.to_owned(), f.public.clone())].into()))
            .collect()
    };
    if let Ok(unverified) = prepare_pdu(&value, &room.rules) {
        let keys = keys_for(&mut unverified.signers.iter().map(|(s, _)| s.to_string()));
        let _ = verify_pdu(unverified, &keys, &room.rules);
    }

    // Signed again by every required server with this target's key: the signatures hold.
    let Ok(CanonicalJsonValue::Object(mut object)) = CanonicalJsonValue::try_from(value) else {
        return;
    };
    // What Palabre takes out before checking is not signed either.
    for field in ["signatures", "hashes", "unsigned", "event_id"] {
        object.remove(field);
    }
    let Ok(mut signers) =
        required_server_signatures_to_verify_event(&object, &room.rules.signatures)
    else {
        return;
    };
    // A third-party invite needs no server's signature; the sender's server signs it anyway,
    // which also gives it its content hash.
    if let Some(CanonicalJsonValue::String(sender)) = object.get("sender") {
        if let Ok(user) = ruma::UserId::parse(sender.as_str()) {
            signers.insert(user.server_name().to_owned());
        }
    }
    if signers.is_empty() {
        return;
    }
    let mut signed = true;
    for (i, s) in signers.iter().enumerate() {
        let res = if i == 0 {
            hash_and_sign_event(s.as_str(), &f.pair, &mut object, &room.rules.redaction)
        } else {
            sign_event(s.as_str(), &f.pair, &mut object, &room.rules.redaction)
        };
        signed &= res.is_ok();
    }
    if !signed {
        return;
    }
    if tamper {
        // A content key that the redaction drops: the signatures still hold, the hash does
        // not. (Some events keep their whole content when redacted: left alone.)
        let mut altered = object.clone();
        if let Some(CanonicalJsonValue::Object(content)) = altered.get_mut("content") {
            content.insert("fuzz.altered".into(), true.into());
        }
        let redacted =
            |o: &CanonicalJsonObject| redact(o.clone(), &room.rules.redaction, None).ok();
        if redacted(&altered).is_some() && redacted(&altered) == redacted(&object) {
            object = altered;
        }
    }
    let Ok(resigned) = serde_json::to_value(&object) else {
        return;
    };
    let Ok(unverified) = prepare_pdu(&resigned, &room.rules) else {
        return;
    };
    let keys = keys_for(&mut unverified.signers.iter().map(|(s, _)| s.to_string()));
    let checked = match verify_pdu(unverified, &keys, &room.rules) {
        Ok(c) => c,
        Err(e) => panic!(
            "an event signed by its required servers fails: {}",
            e.message
        ),
    };

    // The checked JSON as the room service parses it, then the auth rules.
    let Ok(pdu) = Pdu::parse(checked.event_id.as_str(), &checked.json) else {
        return;
    };
    let room_id = if room.v12 { "!create" } else { "!room:a.test" };
    let room_id = ruma::RoomId::parse(room_id).expect("room id");
    let _ = belongs_to(&pdu, &room_id, room.v12);
    let _ = pdu.content_str("membership");
    let _ = pdu.strings();
    if check_auth_events(&room.rules, &pdu, &room.known, Some(&room.create)).is_err() {
        return;
    }
    let _ =
        state_res::check_state_dependent_auth_rules(&room.rules.authorization, &*pdu, |t, k| {
            room.state.get(&(t.clone(), k.to_owned())).cloned()
        });
    let _ = access_rules::check(&f.policy, &room.state, &pdu);
});
