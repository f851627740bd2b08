//! Bytes a database refuses: a NUL character in any path segment, query value or JSON string
//! of a request is a 400 on both databases (PostgreSQL text cannot hold it; it used to be a 500
//! there and a 200 on SQLite), and such a refused request moves no stream.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

async fn nul_bytes_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let before = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (r, u, d) = (enc(&room), enc(&alice.user_id), enc(&alice.device_id));
    let server = s.name();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{r}/send/m.room%00x/t1"),
            Some(json!({"body": "x"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/a%00b"),
            Some(json!({"topic": "x"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t%00"),
            Some(json!({"msgtype": "m.text", "body": "x"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t2"),
            Some(json!({"msgtype": "m.text", "body": "a\u{0}b"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/user/{u}/account_data/x%00y"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/user/{u}/account_data/m.x"),
            Some(json!({"k\u{0}": 1})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/user/{u}/rooms/{r}/tags/t%00"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/devices/{d}"),
            Some(json!({"display_name": "a\u{0}"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/profile/{u}/displayname"),
            Some(json!({"displayname": "a\u{0}"})),
        ),
        (
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{r}/state/m.room.name/"),
            Some(json!({"name": "a\u{0}"})),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/user_directory/search".into(),
            Some(json!({"search_term": "a\u{0}"})),
        ),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/download/{server}/ab%00cd"),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&from=%00"),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let (st, v) = s
            .call(method.clone(), &path, Some(&alice.token), body)
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
        assert!(
            matches!(
                v["errcode"].as_str(),
                Some("M_BAD_JSON" | "M_INVALID_PARAM")
            ),
            "{method} {path}: {v}"
        );
    }
    // Nothing moved: the next message is what a sync from the earlier token gets, and only it.
    s.send_text(&alice, &room, "after", "after").await;
    let next = s.sync(&alice, Some(&before), 0).await;
    assert_eq!(
        timeline_bodies(&next, &room),
        vec!["after".to_owned()],
        "{next}"
    );
    s.stop().await;
}

crate::both_backends!(nul_bytes_refused);
