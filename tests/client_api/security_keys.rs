//! Other servers' keys and answers: made-up key ids cannot make this server fetch keys again
//! and again, keys are trusted at most 7 days after they were fetched, and a remote error
//! status reaches clients only where it means the same to them.

use std::sync::atomic::Ordering;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

/// Requests claiming to come from a server whose keys cannot be had, each with another made-up
/// key id: its keys are asked for once, not once per request.
async fn key_fetches_are_bounded(b: Backend) {
    let (port, hits) = tripwire();
    let s = TestServer::start(b).await;
    let origin = format!("localhost:{port}");
    for i in 0..10 {
        let auth = format!(
            "X-Matrix origin=\"{origin}\",destination=\"{}\",key=\"ed25519:k{i}\",sig=\"AAAA\"",
            s.name()
        );
        let resp = s
            .http
            .get(format!(
                "{}/_matrix/federation/v1/query/profile?user_id=%40a%3A{}",
                s.base,
                enc(&s.name())
            ))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch of the origin's keys"
    );
    s.stop().await;
}

/// B says its keys are valid for a year; A trusts them for at most 7 days from the fetch.
async fn keys_trusted_seven_days_at_most(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |c| c.federation.key_validity_secs = 365 * 24 * 3600).await;
    let bob = bs.register("bob").await;
    let alice = a.register("alice").await;
    // B's notary answer says a year...
    let (st, v) = a
        .call(
            Method::GET,
            &format!("/_matrix/key/v2/query/{}", enc(&bs.name())),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let year_ms = 300 * 24 * 3600 * 1000i64;
    assert!(
        v["server_keys"][0]["valid_until_ts"].as_i64().unwrap() > palabre::util::now_ms() + year_ms,
        "{v}"
    );
    // ... and a signed request from B makes A check B's key.
    let (st, _) = bs
        .get(
            &bob,
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let week_ms = 7 * 24 * 3600 * 1000i64;
    let keys = a.services().db.server_keys(&bs.name()).await.unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert!(
            k.valid_until_ts <= palabre::util::now_ms() + week_ms,
            "key {} trusted until {}",
            k.key_id,
            k.valid_until_ts
        );
    }
    a.stop().await;
    bs.stop().await;
}

/// A fake federation peer answering every request with `status` and a Matrix error.
async fn status_peer(cert: &FedCert, status: u16) -> u16 {
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(json!({"errcode": "M_UNAUTHORIZED", "error": "who are you"})),
        )
    });
    fake_peer(cert, app).await
}

/// A remote 401 (a client would log out on a 401) or 500 is a 502 here; a remote 404 stays 404.
async fn remote_errors_mapped(b: Backend) {
    let cert = fed_cert();
    let port = free_port();
    let a = TestServer::start_with(b, |c| federating(c, &cert, port)).await;
    let alice = a.register("alice").await;
    for (status, expected) in [
        (401, StatusCode::BAD_GATEWAY),
        (500, StatusCode::BAD_GATEWAY),
        (503, StatusCode::BAD_GATEWAY),
        (404, StatusCode::NOT_FOUND),
    ] {
        let peer = status_peer(&cert, status).await;
        let (st, v) = a
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/profile/{}",
                    enc(&format!("@x:localhost:{peer}"))
                ),
            )
            .await;
        assert_eq!(st, expected, "remote {status}: {v}");
        if status != 404 {
            assert_eq!(v["errcode"], "M_UNKNOWN", "{v}");
            assert!(!v.to_string().contains("who are you"), "{v}");
        }
    }
    a.stop().await;
}

crate::both_backends!(
    key_fetches_are_bounded,
    keys_trusted_seven_days_at_most,
    remote_errors_mapped,
);
