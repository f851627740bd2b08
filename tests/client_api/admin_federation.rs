//! The federation admin API through HTTP (Synapse's `federation.py`): destinations with their
//! retry state as the sender persists it, the rooms sent to each, the reset of a backoff, the
//! pagination; and the user endpoint that lets an account replace its cross-signing keys
//! without UIA.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vodozemac::Ed25519SecretKey;

use crate::{common::*, e2ee::cross_key};

crate::both_backends!(
    destination_backoff_and_reset,
    destination_pages,
    cross_signing_replacement_without_uia,
);

const DESTS: &str = "/_synapse/admin/v1/federation/destinations";

async fn destination(s: &TestServer, admin: &User, dest: &str) -> (StatusCode, Value) {
    s.get(admin, &format!("{DESTS}/{}", enc(dest))).await
}

/// A sends to B: B is listed, healthy, with the shared room; B stops: A backs off; the reset
/// makes A retry at once (a new first failure, not the next step of the old backoff).
async fn destination_backoff_and_reset(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let b_name = bs.name();
    let admin = a.admin_user("root").await;
    let carol = a.register("carol").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&admin, json!({ "preset": "public_chat" }))
        .await;
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "remote join: {v}");
    a.send_text(&admin, &room, "t1", "hello B").await;

    // B is a destination, healthy, with the last event sent to it.
    eventually(|| async {
        let (st, v) = destination(&a, &admin, &b_name).await;
        st == StatusCode::OK && v["last_successful_stream_ordering"].is_i64()
    })
    .await;
    let (_, d) = destination(&a, &admin, &b_name).await;
    assert_eq!(d["destination"], b_name);
    assert_eq!(d["retry_last_ts"], 0, "{d}");
    assert_eq!(d["retry_interval"], 0, "{d}");
    assert!(d["failure_ts"].is_null(), "{d}");
    let (st, list) = a.get(&admin, DESTS).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["destinations"][0], d);
    assert!(list.get("next_token").is_none());

    // The room shared with B.
    let (st, rooms) = a
        .get(&admin, &format!("{DESTS}/{}/rooms", enc(&b_name)))
        .await;
    assert_eq!(st, StatusCode::OK, "{rooms}");
    assert_eq!(rooms["total"], 1, "{rooms}");
    assert_eq!(rooms["rooms"][0]["room_id"], room);
    assert!(rooms["rooms"][0]["stream_ordering"].is_i64(), "{rooms}");
    assert!(rooms.get("next_token").is_none());

    // Not in backoff: nothing to reset (Synapse's 400).
    let reset = format!("{DESTS}/{}/reset_connection", enc(&b_name));
    let (st, v) = a.post(&admin, &reset, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_UNKNOWN");
    assert_eq!(
        v["error"],
        "The retry timing does not need to be reset for this destination."
    );

    // Unknown destinations, and plain users.
    for path in [
        format!("{DESTS}/unknown.example"),
        format!("{DESTS}/unknown.example/rooms"),
    ] {
        let (st, v) = a.get(&admin, &path).await;
        assert_eq!(
            (st, v["errcode"].clone()),
            (StatusCode::NOT_FOUND, json!("M_NOT_FOUND")),
            "{path}"
        );
    }
    let (st, v) = a
        .post(
            &admin,
            &format!("{DESTS}/unknown.example/reset_connection"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    for (st, v) in [
        a.get(&carol, DESTS).await,
        destination(&a, &carol, &b_name).await,
        a.get(&carol, &format!("{DESTS}/{}/rooms", enc(&b_name)))
            .await,
        a.post(&carol, &reset, json!({})).await,
    ] {
        assert_eq!(
            (st, v["errcode"].clone()),
            (StatusCode::FORBIDDEN, json!("M_FORBIDDEN"))
        );
    }

    // B goes down: A's next transaction fails, then backs off (1 s, then 2 s).
    bs.stop().await;
    a.send_text(&admin, &room, "t2", "are you there?").await;
    eventually(|| async {
        let (_, d) = destination(&a, &admin, &b_name).await;
        d["retry_interval"].as_i64().unwrap_or(0) >= 2000
    })
    .await;
    let (_, d) = destination(&a, &admin, &b_name).await;
    let failed_since = d["failure_ts"].as_i64().expect("failure_ts set");
    assert!(d["retry_last_ts"].as_i64().unwrap() >= failed_since, "{d}");
    let (st, page) = a
        .get(&admin, &format!("{DESTS}?order_by=failure_ts&dir=b"))
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["destinations"][0]["failure_ts"], failed_since);

    // The reset: retried at once, so the failure starts again from the first step.
    let (st, v) = a.post(&admin, &reset, json!({})).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    eventually(|| async {
        let (_, d) = destination(&a, &admin, &b_name).await;
        d["failure_ts"].is_null()
            || (d["failure_ts"].as_i64().unwrap() > failed_since
                && d["retry_interval"].as_i64().unwrap() <= 1000)
    })
    .await;
}

/// Several destinations (to-device messages to servers on closed ports): a walk by pages
/// returns each once; the filter and the orders.
async fn destination_pages(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("root").await;
    let mut ports: Vec<u16> = vec![];
    while ports.len() < 5 {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let names: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    for (i, n) in names.iter().enumerate() {
        let (st, v) = s
            .put(
                &admin,
                &format!("/_matrix/client/v3/sendToDevice/m.test/t{i}"),
                json!({ "messages": { format!("@u:{n}"): { "*": { "n": i } } } }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    eventually(|| async {
        let (_, v) = s.get(&admin, DESTS).await;
        v["total"] == 5
            && v["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["failure_ts"].is_i64() && d["retry_interval"].as_i64() > Some(0))
    })
    .await;

    for order in [
        "destination",
        "retry_last_ts",
        "retry_interval",
        "failure_ts",
        "last_successful_stream_ordering",
    ] {
        for dir in ["f", "b"] {
            let mut seen = vec![];
            let mut from = "0".to_owned();
            loop {
                let (st, v) = s
                    .get(
                        &admin,
                        &format!("{DESTS}?limit=2&from={from}&order_by={order}&dir={dir}"),
                    )
                    .await;
                assert_eq!(st, StatusCode::OK, "{v}");
                assert_eq!(v["total"], 5);
                for d in v["destinations"].as_array().unwrap() {
                    seen.push(d["destination"].as_str().unwrap().to_owned());
                }
                match v.get("next_token") {
                    Some(t) => from = t.as_str().expect("next_token is a string").to_owned(),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 5, "{order} {dir}: {seen:?}");
            let set: HashSet<&String> = seen.iter().collect();
            assert_eq!(set, names.iter().collect(), "{order} {dir}");
            if order == "destination" {
                let mut sorted = seen.clone();
                sorted.sort();
                if dir == "b" {
                    sorted.reverse();
                }
                assert_eq!(seen, sorted);
            }
        }
    }

    // The substring filter.
    let (_, v) = s
        .get(&admin, &format!("{DESTS}?destination={}", ports[2]))
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["destinations"][0]["destination"], names[2]);
    let (_, v) = s
        .get(&admin, &format!("{DESTS}?destination=localhost"))
        .await;
    assert_eq!(v["total"], 5);
    // Bad parameters.
    for q in ["order_by=nope", "dir=x", "from=-1", "limit=-1", "limit=abc"] {
        let (st, v) = s.get(&admin, &format!("{DESTS}?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{q}");
    }
    // No room was ever sent to them.
    let (st, v) = s
        .get(&admin, &format!("{DESTS}/{}/rooms", enc(&names[0])))
        .await;
    assert_eq!((st, v["total"].clone()), (StatusCode::OK, json!(0)), "{v}");
}

pub(crate) fn cross_keys(user: &str) -> Value {
    let (m, ss, us) = (
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
    );
    json!({
        "master_key": cross_key(user, "master", &m, None),
        "self_signing_key": cross_key(user, "self_signing", &ss, Some(&m)),
        "user_signing_key": cross_key(user, "user_signing", &us, Some(&m)),
    })
}

/// Replacing cross-signing keys asks for UIA, but not for 10 minutes after the admin's call.
async fn cross_signing_replacement_without_uia(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let upload = "/_matrix/client/v3/keys/device_signing/upload";
    let (st, v) = s.post(&alice, upload, cross_keys(&alice.user_id)).await;
    assert_eq!(st, StatusCode::OK, "first upload: {v}");
    // A replacement needs UIA.
    let (st, v) = s.post(&alice, upload, cross_keys(&alice.user_id)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["flows"].is_array(), "{v}");

    let allow = |u: &str| {
        format!(
            "/_synapse/admin/v1/users/{}/_allow_cross_signing_replacement_without_uia",
            enc(u)
        )
    };
    // Plain users may not; unknown users and users without keys are 404.
    let (st, _) = s.post(&alice, &allow(&alice.user_id), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let domain = alice.user_id.split_once(':').unwrap().1.to_owned();
    let (st, v) = s
        .post(&admin, &allow(&format!("@nobody:{domain}")), json!({}))
        .await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
    );
    let (st, v) = s.post(&admin, &allow(&admin.user_id), json!({})).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
    );

    let before = palabre::util::now_ms();
    let (st, v) = s.post(&admin, &allow(&alice.user_id), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let until = v["updatable_without_uia_before_ms"]
        .as_i64()
        .expect("a deadline");
    assert!(until >= before + 600_000 && until <= palabre::util::now_ms() + 600_000);
    let new = cross_keys(&alice.user_id);
    let (st, v) = s.post(&alice, upload, new.clone()).await;
    assert_eq!(st, StatusCode::OK, "replacement without UIA: {v}");
    let (st, q) = s
        .post(
            &alice,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { &alice.user_id: [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        q["master_keys"][&alice.user_id]["keys"],
        new["master_key"]["keys"]
    );
}
