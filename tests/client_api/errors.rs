use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{enc, Backend, TestServer};

crate::both_backends!(error_shapes, oversize_event_and_body, request_ids);

async fn error_shapes(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;

    let (st, v) = s
        .call(Method::GET, "/_matrix/client/v3/nope", None, None)
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED"))
    );
    let (st, v) = s
        .call(
            Method::DELETE,
            "/_matrix/client/v3/createRoom",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("M_UNRECOGNIZED"))
    );
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/v3/account/whoami", None, None)
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN"))
    );
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some("pat_bogus"),
            None,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami?access_token=pat_bogus",
            None,
            None,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );

    let send = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
        enc(&room)
    );
    let (st, v) = s
        .raw(Method::PUT, &send, Some(&alice.token), "{not json")
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_NOT_JSON"))
    );
    let (st, v) = s
        .raw(Method::PUT, &send, Some(&alice.token), "[1, 2]")
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    let (st, v) = s
        .raw(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&alice.token),
            r#"{"invite": "notalist"}"#,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    // Floats are not canonical JSON.
    let (st, v) = s
        .put(
            &alice,
            &send,
            json!({"msgtype": "m.text", "body": "x", "n": 1.5}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/rooms/not-a-room/messages",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Extreme pagination tokens and limits are answered, not crashed on.
    for q in [
        "from=t9223372036854775807&dir=b",
        "from=t-5&dir=f&limit=-3",
        "to=t9223372036854775807&dir=f&limit=99999999",
    ] {
        let (st, v) = s
            .get(
                &alice,
                &format!("/_matrix/client/v3/rooms/{}/messages?{q}", enc(&room)),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
    }
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/sync?since=garbage",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, v) = s
        .post(
            &alice,
            "/_matrix/client/v3/createRoom",
            json!({"room_version": "1"}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION"))
    );
    let (st, _) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    // CORS preflight for web clients.
    let resp = s
        .http
        .request(
            Method::OPTIONS,
            format!("{}/_matrix/client/v3/sync", s.base),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    s.stop().await;
}

async fn oversize_event_and_body(b: Backend) {
    let s = TestServer::start_with(b, |c| c.max_request_bytes = 200_000).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let send = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/big",
        enc(&room)
    );
    let (st, v) = s
        .put(
            &alice,
            &send,
            json!({"msgtype": "m.text", "body": "x".repeat(70_000)}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE"))
    );
    let (st, v) = s
        .put(
            &alice,
            &send,
            json!({"msgtype": "m.text", "body": "x".repeat(300_000)}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE"))
    );
    // Nothing was stored and the room still works.
    let id = s.send_text(&alice, &room, "small", "still fine").await;
    assert!(id.starts_with('$'));
    s.stop().await;
}

/// Every answer (success, error, unknown route) carries the request id of its access-log
/// line; each request has its own, made by the server (a client's is not echoed).
async fn request_ids(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mut seen = std::collections::HashSet::new();
    for (path, token) in [
        (
            "/_matrix/client/v3/account/whoami",
            Some(alice.token.as_str()),
        ),
        ("/_matrix/client/v3/account/whoami", None),
        ("/_matrix/client/v3/nope", None),
        ("/_matrix/client/versions", None),
    ] {
        let mut req = s
            .http
            .get(format!("{}{path}", s.base))
            .header("x-request-id", "chosen-by-the-client");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an x-request-id on every answer")
            .to_owned();
        assert_eq!(id.len(), 16, "{path}: {id}");
        assert_ne!(id, "chosen-by-the-client");
        assert!(seen.insert(id), "request ids repeat");
    }
}
