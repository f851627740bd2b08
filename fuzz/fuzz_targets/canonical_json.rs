//! Canonical JSON and signature checks on what another server sends: a request's `X-Matrix`
//! header and body (the request signature), a `/_matrix/key/v2/server` answer (self-signed
//! keys), and any JSON taken to canonical form, which must be stable once canonical.
//!
//! Input: the `X-Matrix` header value, a line break, then the JSON body.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palabre::services::federation::keys::verified_keys;
use ruma::{
    api::federation::authentication::XMatrix,
    serde::Base64,
    signatures::{sign_json, verify_json, Ed25519KeyPair, PublicKeyMap},
    CanonicalJsonObject, CanonicalJsonValue, ServerName,
};
use serde_json::Value;

const KEY_ID: &str = "ed25519:fuzz";

fn key() -> &'static (Ed25519KeyPair, Base64) {
    static K: OnceLock<(Ed25519KeyPair, Base64)> = OnceLock::new();
    K.get_or_init(|| {
        // A fixed PKCS#8 (v1) Ed25519 key, so that a crashing input replays the same way.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(1..=32u8);
        let pair = Ed25519KeyPair::from_der(&der, "fuzz".into()).expect("fixed key");
        let public = Base64::new(pair.public_key().to_vec());
        (pair, public)
    })
}

/// This target's key under every key id that `object` claims a signature with.
fn claimed_keys(object: &CanonicalJsonObject) -> PublicKeyMap {
    let public = &key().1;
    let mut map = PublicKeyMap::new();
    if let Some(CanonicalJsonValue::Object(sigs)) = object.get("signatures") {
        for (server, ids) in sigs {
            if let CanonicalJsonValue::Object(ids) = ids {
                let set = ids.keys().map(|id| (id.clone(), public.clone())).collect();
                map.insert(server.clone(), set);
            }
        }
    }
    map
}

fn x_matrix(header: &[u8], body: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(header) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let Ok(xm) = XMatrix::extract_from_http_headers(&headers) else {
        return;
    };
    let Ok(request) = http::Request::builder()
        .method("PUT")
        .uri("/_matrix/federation/v1/send/1")
        .body(body)
    else {
        return;
    };
    let me = ServerName::parse("a.test").expect("server name");
    let map: PublicKeyMap = [(
        xm.origin.to_string(),
        [(xm.key.to_string(), key().1.clone())].into(),
    )]
    .into();
    let _ = xm.verify_http_request(&request, &me, &map);
}

fn server_keys(value: &Value) {
    let server = value
        .get("server_name")
        .and_then(Value::as_str)
        .and_then(|s| ServerName::parse(s).ok())
        .unwrap_or_else(|| ServerName::parse("a.test").expect("server name"));
    let _ = verified_keys(&server, value, 0);

    // The same answer self-signed with a key it lists: past the signature to what follows.
    let Ok(CanonicalJsonValue::Object(mut object)) = CanonicalJsonValue::try_from(value.clone())
    else {
        return;
    };
    let (pair, public) = key();
    let mut keys = match object.remove("verify_keys") {
        Some(CanonicalJsonValue::Object(k)) => k,
        _ => CanonicalJsonObject::new(),
    };
    keys.insert(
        KEY_ID.into(),
        CanonicalJsonValue::Object([("key".into(), public.encode().into())].into()),
    );
    object.insert("verify_keys".into(), keys.into());
    object.remove("signatures");
    if sign_json(server.as_str(), pair, &mut object).is_err() {
        return;
    }
    if let Ok(signed) = serde_json::to_value(&object) {
        let _ = verified_keys(&server, &signed, 0);
    }
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    x_matrix(header, body);

    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Ok(canonical) = CanonicalJsonValue::try_from(value.clone()) {
        // Canonical JSON written out and read back is the same text.
        let text = canonical.to_string();
        let again: Value = serde_json::from_str(&text).expect("canonical JSON parses");
        let again = CanonicalJsonValue::try_from(again).expect("canonical JSON stays canonical");
        assert_eq!(again.to_string(), text);
        if let CanonicalJsonValue::Object(object) = &canonical {
            let _ = verify_json(&claimed_keys(object), object);
        }
    }
    server_keys(&value);
});
