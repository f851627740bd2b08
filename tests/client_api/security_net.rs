//! The server as a weapon against others: its own requests (federation, key fetches, the
//! notary, remote media, pushers) never reach an address of the outbound deny list unless
//! allow-listed, follow no redirects on federation, fail with one neutral message, and read
//! answers through a cap whether or not they announce their length.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// A server with the default outbound policy (the tests' loopback allow-list removed).
async fn closed_server(b: Backend) -> TestServer {
    TestServer::start_with(b, |c| {
        c.outbound = palabre::config::OutboundConfig::default();
    })
    .await
}

/// With the default policy nothing of this server's reaches loopback: a user's profile and
/// media requests naming a loopback server (by name, resolved, or as an IP literal), a request
/// signed in the name of such a server (its keys are fetched), and the notary asked for its
/// keys. Each answers "could not be reached" (or 401 for the unverifiable request).
async fn ssrf_outbound_refused(b: Backend) {
    let (port, hits) = tripwire();
    let s = closed_server(b).await;
    let alice = s.register("alice").await;
    for server in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (st, v) = s
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/profile/{}",
                    enc(&format!("@x:{server}"))
                ),
            )
            .await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{server}: loopback was reached"
        );
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{server}: {v}");
        assert_eq!(v["error"], format!("{server} could not be reached"), "{v}");
        let (st, v) = s
            .get(
                &alice,
                &format!("/_matrix/client/v1/media/download/{server}/abcdefgh"),
            )
            .await;
        assert!(
            st.is_server_error() || st == StatusCode::NOT_FOUND,
            "{server}: {st} {v}"
        );
        let (st, _) = s
            .call(
                reqwest::Method::POST,
                "/_matrix/key/v2/query",
                None,
                Some(json!({"server_keys": {server.clone(): {}}})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let auth = format!(
            "X-Matrix origin=\"{server}\",destination=\"{}\",key=\"ed25519:k\",sig=\"AAAA\"",
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
        0,
        "a loopback port was reached"
    );
    s.stop().await;
}

/// With the allow-list (what a closed federation on a private network sets) the same request
/// does go out; whatever went wrong (closed port, connection dropped during TLS) the client
/// reads the same text.
async fn ssrf_allow_list_and_neutral_errors(b: Backend) {
    let (port, hits) = tripwire();
    let closed = free_port();
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    for server in [format!("localhost:{port}"), format!("localhost:{closed}")] {
        let (st, v) = s
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/profile/{}",
                    enc(&format!("@x:{server}"))
                ),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{server}: {v}");
        assert_eq!(v["error"], format!("{server} could not be reached"), "{v}");
    }
    assert!(
        hits.load(Ordering::SeqCst) > 0,
        "the allow-listed address was not tried"
    );
    s.stop().await;
}

/// A peer answering a redirect to another (allow-listed) address: not followed.
async fn federation_redirects_not_followed(b: Backend) {
    let (trip, hits) = tripwire();
    let cert = fed_cert();
    let port = free_port();
    let a = TestServer::start_with(b, |c| federating(c, &cert, port)).await;
    let alice = a.register("alice").await;
    let target = format!("https://localhost:{trip}/_matrix/federation/v1/query/profile");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, target)],
                "",
            )
        }
    });
    let peer = fake_peer(&cert, app).await;
    let (st, v) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/profile/{}",
                enc(&format!("@x:localhost:{peer}"))
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert!(asked.load(Ordering::SeqCst) > 0, "the peer was not asked");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    a.stop().await;
}

/// A body of `total` bytes in 64 KiB chunks with no Content-Length; `sent` counts the chunks
/// the server actually asked for.
fn endless(total: usize, sent: Arc<AtomicUsize>) -> axum::body::Body {
    const CHUNK: usize = 64 * 1024;
    let stream = futures::stream::iter(0..total / CHUNK).map(move |_| {
        sent.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Infallible>(axum::body::Bytes::from(vec![b' '; CHUNK]))
    });
    axum::body::Body::from_stream(stream)
}

/// A peer answering 128 MiB of blanks, chunked: the server stops reading at its 32 MiB cap
/// instead of reading it all and looking at the size afterwards.
async fn federation_answers_capped(b: Backend) {
    let cert = fed_cert();
    let port = free_port();
    let a = TestServer::start_with(b, |c| federating(c, &cert, port)).await;
    let alice = a.register("alice").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(endless(128 << 20, counter))
                .unwrap()
        }
    });
    let peer = fake_peer(&cert, app).await;
    let (st, v) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/profile/{}",
                enc(&format!("@x:localhost:{peer}"))
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    let chunks = sent.load(Ordering::SeqCst);
    assert!(chunks > 0, "the peer was not asked");
    let read_mib = chunks * 64 / 1024;
    assert!(read_mib < 64, "{read_mib} MiB of the answer were read");
    a.stop().await;
}

/// A push gateway: a tripwire-like counter of notify requests, answering `body`.
async fn gateway(
    hits: Arc<AtomicUsize>,
    body: impl Fn() -> axum::body::Body + Clone + Send + Sync + 'static,
) -> u16 {
    let app = axum::Router::new().fallback(move || {
        let hits = hits.clone();
        let body = body.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(body())
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// Makes `pusher_user` of `s` get a notification (a message from another member).
async fn notify(s: &TestServer, pusher_url: &str) {
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "private_chat", "invite": [bob.user_id]}),
        )
        .await;
    s.join(&bob, &room).await;
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            json!({
                "pushkey": "k", "kind": "http", "app_id": "fr.gouv.tchap", "app_display_name": "Tchap",
                "device_display_name": "phone", "lang": "fr", "data": {"url": pusher_url},
            }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.send_text(&alice, &room, "t1", "hello").await;
}

/// Pushers: a gateway on loopback is never called with the default policy, by IP literal or
/// by name, while the same set-up with the allow-list calls its gateway (the control that the
/// notification was due). The allowed gateway answers an endless body: the server reads at most
/// its 64 KiB cap of it.
async fn ssrf_pushers(b: Backend) {
    let (denied_hits, allowed_hits) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let blank = || axum::body::Body::from("{}");
    let denied = gateway(denied_hits.clone(), blank).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let allowed = gateway(allowed_hits.clone(), move || {
        endless(64 << 20, counter.clone())
    })
    .await;
    let closed = closed_server(b).await;
    notify(
        &closed,
        &format!("http://127.0.0.1:{denied}/_matrix/push/v1/notify"),
    )
    .await;
    let closed_by_name = closed_server(b).await;
    notify(
        &closed_by_name,
        &format!("http://localhost:{denied}/_matrix/push/v1/notify"),
    )
    .await;
    let open = TestServer::start(b).await;
    notify(
        &open,
        &format!("http://127.0.0.1:{allowed}/_matrix/push/v1/notify"),
    )
    .await;
    eventually(|| async { allowed_hits.load(Ordering::SeqCst) > 0 }).await;
    // The first retry of a refused gateway comes after a second: leave time for two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        denied_hits.load(Ordering::SeqCst),
        0,
        "a loopback gateway was called"
    );
    let read_kib = sent.load(Ordering::SeqCst) * 64;
    assert!(
        read_kib < 16 * 1024,
        "{read_kib} KiB of the gateway's answer were read"
    );
    for s in [closed, closed_by_name, open] {
        s.stop().await;
    }
}

crate::both_backends!(
    ssrf_outbound_refused,
    ssrf_allow_list_and_neutral_errors,
    federation_redirects_not_followed,
    federation_answers_capped,
    ssrf_pushers,
);
