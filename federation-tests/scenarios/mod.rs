//! Scenarios, and checks shared between them.

mod acl;
mod allow_list;
mod cluster;
mod crash;
mod e2ee;
mod ephemeral;
mod hold;
mod keys_profiles;
mod rooms;
mod stateres;
mod synapse;
mod tchap;

use std::collections::BTreeMap;

use reqwest::StatusCode;
use ruma::{serde::Base64, signatures::PublicKeyMap, CanonicalJsonValue};
use serde_json::{json, Value};

use crate::harness::{enc, Homeserver, Net, Session};

/// `GET {server}/_matrix/key/v2/server` over TLS: the server's own key response, whose
/// self-signature is checked.
pub async fn own_keys(net: &Net, server: &dyn Homeserver) -> Value {
    let url = format!("{}/_matrix/key/v2/server", server.federation_base());
    let resp = net.https().get(&url).send().await.expect(&url);
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let v: Value = resp.json().await.expect("key response JSON");
    assert_eq!(v["server_name"], server.server_name(), "{v}");
    assert!(
        v["valid_until_ts"].as_i64().unwrap_or(0) > now_ms(),
        "keys of {} already expired: {v}",
        server.label()
    );
    verify_signed_by(&v, &[(server.server_name(), &v)]);
    v
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Checks that `object` carries a valid signature of each `(server, its key response)`.
fn verify_signed_by(object: &Value, signers: &[(&str, &Value)]) {
    let mut map = PublicKeyMap::new();
    for (name, keys) in signers {
        let set: BTreeMap<String, Base64> = keys["verify_keys"]
            .as_object()
            .unwrap_or_else(|| panic!("no verify_keys for {name}: {keys}"))
            .iter()
            .map(|(id, k)| {
                let key = k["key"].as_str().expect("key");
                (id.clone(), Base64::parse(key).expect("base64 key"))
            })
            .collect();
        map.insert((*name).to_owned(), set);
    }
    let CanonicalJsonValue::Object(obj) =
        CanonicalJsonValue::try_from(object.clone()).expect("canonical JSON")
    else {
        panic!("not an object: {object}")
    };
    if let Err(e) = ruma::signatures::verify_json(&map, &obj) {
        let who: Vec<&str> = signers.iter().map(|(n, _)| *n).collect();
        panic!("signatures of {who:?} do not verify: {e}\n{object}");
    }
}

/// The notary `/_matrix/key/v2/query` of `notary` (GET and POST) answers for `subject` with
/// `subject`'s own keys, signed by `subject` and by `notary`.
pub async fn check_notary(net: &Net, notary: &dyn Homeserver, subject: &dyn Homeserver) {
    let subject_keys = own_keys(net, subject).await;
    let notary_keys = own_keys(net, notary).await;
    let check = |v: &Value| {
        let entries = v["server_keys"].as_array().expect("server_keys");
        assert_eq!(
            entries.len(),
            1,
            "{} about {}: {v}",
            notary.label(),
            subject.label()
        );
        let entry = &entries[0];
        assert_eq!(entry["server_name"], subject.server_name(), "{entry}");
        assert_eq!(entry["verify_keys"], subject_keys["verify_keys"], "{entry}");
        verify_signed_by(
            entry,
            &[
                (subject.server_name(), &subject_keys),
                (notary.server_name(), &notary_keys),
            ],
        );
    };
    let url = format!(
        "{}/_matrix/key/v2/query/{}",
        notary.federation_base(),
        enc(subject.server_name())
    );
    let resp = net.https().get(&url).send().await.expect(&url);
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    check(&resp.json().await.expect("JSON"));
    let url = format!("{}/_matrix/key/v2/query", notary.federation_base());
    let resp = net
        .https()
        .post(&url)
        .json(&json!({ "server_keys": { subject.server_name(): {} } }))
        .send()
        .await
        .expect(&url);
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    check(&resp.json().await.expect("JSON"));
}

/// `reader` reads `target`'s profile (on another server) through its own server: 200 with
/// the display name `target` set.
pub async fn reads_remote_profile(reader: &Session, target: &Session, displayname: &str) {
    let (st, v) = reader.profile(&target.user_id).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{} reads the profile of {}: {v}",
        reader.user_id,
        target.user_id
    );
    assert_eq!(v["displayname"], displayname, "{v}");
}

/// A user that does not exist on the other server: 404 M_NOT_FOUND relayed to the client.
pub async fn remote_profile_not_found(reader: &Session, server: &str) {
    let ghost = format!("@nobody-{}:{server}", crate::harness::unique(""));
    let (st, v) = reader.profile(&ghost).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "{} reads {ghost}: {v}",
        reader.user_id
    );
    assert_eq!(v["errcode"], "M_NOT_FOUND", "{v}");
}
