//! Security review mends in the room core: stored event JSON is parsed, never grepped;
//! relations stay in their room; bundled aggregations obey history visibility; redactions need
//! the redact power whoever sends them.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

fn state_path(room: &str, kind: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/state/{kind}", enc(room))
}

/// A room that WAS world readable and no longer is must not be readable by non-members, even
/// though `unsigned.prev_content` of its current history visibility says `world_readable`.
async fn history_visibility_is_parsed(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let eve = s.register("eve").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    s.send_text(&alice, &room, "t1", "secret after").await;
    // While world readable, a non-member may read the state.
    let (st, _) = s
        .get(
            &eve,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .put(
            &alice,
            &state_path(&room, "m.room.history_visibility"),
            json!({"history_visibility": "shared"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for path in [
        format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/members", enc(&room)),
    ] {
        let (st, v) = s.get(&eve, &path).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    s.stop().await;
}

/// `contains_url` looks at the content's own `url` key: an avatar removal (whose
/// `prev_content` had a url) has none.
async fn contains_url_is_parsed(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, _) = s
        .put(
            &alice,
            &state_path(&room, "m.room.avatar"),
            json!({"url": "mxc://example.org/abc"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .put(&alice, &state_path(&room, "m.room.avatar"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let filter = enc(&json!({"contains_url": true}).to_string());
    let (st, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&filter={filter}",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let contents: Vec<&Value> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"])
        .collect();
    assert_eq!(
        contents,
        vec![&json!({"url": "mxc://example.org/abc"})],
        "{v}"
    );
    s.stop().await;
}

crate::both_backends!(history_visibility_is_parsed, contains_url_is_parsed);
