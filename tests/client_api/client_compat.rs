//! What clients probe beyond the stable paths: the `unstable` aliases of stable endpoints,
//! the `/versions` they read, third-party networks (none bridged) and the TURN server.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vodozemac::Ed25519SecretKey;

use crate::common::*;
use crate::e2ee::cross_key;

crate::both_backends!(
    unstable_aliases,
    versions_tell_the_truth,
    thirdparty_without_bridges,
    turn_unconfigured,
    turn_with_shared_secret,
    turn_with_fixed_credentials,
);

const UNSTABLE: &str = "/_matrix/client/unstable";
const V3: &str = "/_matrix/client/v3";

fn keys(user: &str, master: &Ed25519SecretKey) -> Value {
    let (ss, us) = (Ed25519SecretKey::new(), Ed25519SecretKey::new());
    json!({
        "master_key": cross_key(user, "master", master, None),
        "self_signing_key": cross_key(user, "self_signing", &ss, Some(master)),
        "user_signing_key": cross_key(user, "user_signing", &us, Some(master)),
    })
}

/// The answer's shape without what differs from one request to the next (the UIA session).
fn shape(st: StatusCode, mut v: Value) -> (StatusCode, Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("session");
    }
    (st, v)
}

async fn unstable_aliases(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let a = alice.user_id.clone();

    // Element's probe (uploadDeviceSigningKeys with no key and no auth) answers on the
    // unstable path as on the stable one.
    let probe = |prefix: &'static str, u: &User| {
        let (s, u) = (&s, u.clone());
        async move {
            let path = format!("{prefix}/keys/device_signing/upload");
            let (st, v) = s.post(&u, &path, json!({})).await;
            shape(st, v)
        }
    };
    assert_eq!(probe(UNSTABLE, &bob).await, probe(V3, &bob).await);

    // A first upload through the unstable path is the stable one's: the keys are published.
    let master = Ed25519SecretKey::new();
    let body = keys(&a, &master);
    let path = format!("{UNSTABLE}/keys/device_signing/upload");
    let (st, v) = s.post(&alice, &path, body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, q) = s
        .post(
            &bob,
            &format!("{V3}/keys/query"),
            json!({ "device_keys": { &a: [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{q}");
    assert_eq!(q["master_keys"][&a]["keys"], body["master_key"]["keys"]);

    // Replacing the master key asks for UIA on both paths, with the same flows.
    let replace = keys(&a, &Ed25519SecretKey::new());
    let (st_u, v_u) = s.post(&alice, &path, replace.clone()).await;
    let (st_s, v_s) = s
        .post(&alice, &format!("{V3}/keys/device_signing/upload"), replace)
        .await;
    assert_eq!(st_u, StatusCode::UNAUTHORIZED, "{v_u}");
    assert_eq!(shape(st_u, v_u), shape(st_s, v_s));

    // Signatures: an empty upload answers the same on both paths; bad input the same error.
    for body in [
        json!({}),
        json!({ &a: { "nokey": "not an object" } }),
        json!([]),
    ] {
        let (st_u, v_u) = s
            .post(
                &alice,
                &format!("{UNSTABLE}/keys/signatures/upload"),
                body.clone(),
            )
            .await;
        let (st_s, v_s) = s
            .post(&alice, &format!("{V3}/keys/signatures/upload"), body)
            .await;
        assert_eq!((st_u, &v_u), (st_s, &v_s));
    }

    // Authenticated, like the stable paths.
    for p in ["keys/device_signing/upload", "keys/signatures/upload"] {
        let (st, v) = s
            .call(
                Method::POST,
                &format!("{UNSTABLE}/{p}"),
                None,
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}: {v}");
        assert_eq!(v["errcode"], "M_MISSING_TOKEN");
    }
    s.stop().await;
}

async fn versions_tell_the_truth(b: Backend) {
    let s = TestServer::start(b).await;
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/versions", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let versions: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // matrix-js-sdk needs v1.1; authenticated media is taken from v1.11.
    // v1.16: extended profiles and ?format=event on state reads are served.
    for needed in ["r0.6.0", "v1.1", "v1.4", "v1.11", "v1.15", "v1.16"] {
        assert!(versions.contains(&needed), "{needed} in {versions:?}");
    }

    let features = v["unstable_features"].as_object().unwrap();
    for flag in [
        "org.matrix.e2e_cross_signing",
        "org.matrix.msc2432",
        "org.matrix.msc2285.stable",
        "org.matrix.msc3827.stable",
        "org.matrix.msc3440.stable",
        "org.matrix.msc3771",
        "org.matrix.msc3773",
        "org.matrix.msc3981",
        "org.matrix.msc3916.stable",
        "org.matrix.msc3814",
        "uk.tcpip.msc4133.stable",
        "im.nheko.summary",
    ] {
        assert_eq!(features.get(flag), Some(&json!(true)), "{flag}");
    }
    // encryption_by_default = "invite" (the default): private presets encrypted, forums not;
    // createRoom does as it says.
    assert_eq!(features["io.element.e2ee_forced.public"], false);
    assert_eq!(features["io.element.e2ee_forced.private"], true);
    assert_eq!(features["io.element.e2ee_forced.trusted_private"], true);
    let alice = s.register("alice").await;
    for (preset, encrypted) in [("private_chat", true), ("public_chat", false)] {
        let room = s.create_room(&alice, json!({ "preset": preset })).await;
        let (st, _) = s
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.encryption",
                    enc(&room)
                ),
            )
            .await;
        assert_eq!(st == StatusCode::OK, encrypted, "{preset}");
    }
    // Nothing claimed that is not served here.
    for absent in [
        "org.matrix.simplified_msc3575",
        "org.matrix.msc4140",
        "org.matrix.msc3030",
        "org.matrix.label_based_filtering",
    ] {
        assert!(features.get(absent).is_none(), "{absent}");
    }
    s.stop().await;
}

async fn thirdparty_without_bridges(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    for prefix in ["/_matrix/client/v3", "/_matrix/client/r0"] {
        let (st, v) = s
            .get(&alice, &format!("{prefix}/thirdparty/protocols"))
            .await;
        assert_eq!((st, v), (StatusCode::OK, json!({})));
        let (st, v) = s
            .get(&alice, &format!("{prefix}/thirdparty/protocol/irc"))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["errcode"], "M_NOT_FOUND");
        for path in [
            "thirdparty/location/irc?searchFields=x",
            "thirdparty/user/irc?nick=bob",
            "thirdparty/location?alias=%23room%3Alocalhost",
            "thirdparty/user?userid=%40bob%3Alocalhost",
        ] {
            let (st, v) = s.get(&alice, &format!("{prefix}/{path}")).await;
            assert_eq!((st, v), (StatusCode::OK, json!([])), "{path}");
        }
    }
    for path in [
        "thirdparty/protocols",
        "thirdparty/protocol/irc",
        "thirdparty/location/irc",
        "thirdparty/user/irc",
        "thirdparty/location?alias=%23room%3Alocalhost",
        "thirdparty/user?userid=%40bob%3Alocalhost",
    ] {
        let (st, v) = s
            .call(Method::GET, &format!("{V3}/{path}"), None, None)
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(v["errcode"], "M_MISSING_TOKEN");
    }
    s.stop().await;
}

const TURN: &str = "/_matrix/client/v3/voip/turnServer";

async fn turn_unconfigured(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    assert_eq!(s.get(&alice, TURN).await, (StatusCode::OK, json!({})));
    let (st, v) = s.call(Method::GET, TURN, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_MISSING_TOKEN");
    s.stop().await;
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn turn_with_shared_secret(b: Backend) {
    let uris = vec![
        "turn:turn.example.org:3478?transport=udp".to_owned(),
        "turns:turn.example.org:5349?transport=tcp".to_owned(),
    ];
    let s = TestServer::start_with(b, |c| {
        c.turn.uris = uris.clone();
        c.turn.shared_secret = Some("coturn-secret".into());
        c.turn.user_lifetime_ms = 3_600_000;
    })
    .await;
    let alice = s.register("alice").await;
    let before = now_s();
    for prefix in ["/_matrix/client/v3", "/_matrix/client/r0"] {
        let (st, v) = s.get(&alice, &format!("{prefix}/voip/turnServer")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["uris"], json!(uris));
        assert_eq!(v["ttl"], 3600);
        // username = "{expiry}:{user_id}", expiry an hour from now, in seconds.
        let username = v["username"].as_str().unwrap();
        let (expiry, user) = username.split_once(':').unwrap();
        assert_eq!(user, alice.user_id);
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (before + 3600..=now_s() + 3600).contains(&expiry),
            "{expiry}"
        );
        // password = base64(HMAC-SHA1(secret, username)), what coturn recomputes.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"coturn-secret").unwrap();
        mac.update(username.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(v["password"], expected);
    }
    let (st, _) = s.call(Method::GET, TURN, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn turn_with_fixed_credentials(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.turn.uris = vec!["turn:turn.example.org".into()];
        c.turn.username = Some("shared".into());
        c.turn.password = Some("hunter2".into());
    })
    .await;
    let alice = s.register("alice").await;
    let (st, v) = s.get(&alice, TURN).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({
            "username": "shared",
            "password": "hunter2",
            "uris": ["turn:turn.example.org"],
            "ttl": 86400,
        })
    );
    s.stop().await;
}
