use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use ruma::{
    serde::Base64,
    signatures::{reference_hash, verify_event, Verified},
    CanonicalJsonObject, RoomVersionId,
};
use serde_json::json;

use crate::common::{Backend, TestServer};

crate::both_backends!(every_stored_event_verifies);

async fn every_stored_event_verifies(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mut rooms = vec![];
    for v in ["10", "11", "12"] {
        let room = s
            .create_room(
                &alice,
                json!({"room_version": v, "invite": [bob.user_id], "name": "signed", "topic": "t"}),
            )
            .await;
        s.join(&bob, &room).await;
        for i in 0..5 {
            s.send_text(&bob, &room, &format!("{v}-{i}"), "signed message")
                .await;
        }
        rooms.push((room, v));
    }
    // The key as served to other servers.
    let (st, key) = s
        .call(Method::GET, "/_matrix/key/v2/server", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(key["server_name"], "localhost");
    let (key_id, pk) = key["verify_keys"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v["key"].as_str().unwrap().to_owned()))
        .unwrap();
    let mut keys = BTreeMap::new();
    keys.insert(key_id.clone(), Base64::parse(&pk).unwrap());
    let mut map = BTreeMap::new();
    map.insert("localhost".to_owned(), keys);
    // The key response is itself signed with that key.
    let key_obj: CanonicalJsonObject = serde_json::from_value(key.clone()).unwrap();
    ruma::signatures::verify_json(&map, &key_obj).expect("key response signature");

    let rows: Vec<(String, String, String)> = sqlx::query_as("SELECT e.event_id, r.room_version, e.json FROM events e JOIN rooms r ON r.room_id = e.room_id")
        .fetch_all(&s.services().db.pool)
        .await
        .unwrap();
    assert!(rows.len() >= 3 * 12, "{} events", rows.len());
    for (event_id, version, json) in rows {
        let rules = RoomVersionId::try_from(version.as_str())
            .unwrap()
            .rules()
            .unwrap();
        let obj: CanonicalJsonObject = serde_json::from_str(&json).unwrap();
        let verified =
            verify_event(&map, &obj, &rules).unwrap_or_else(|e| panic!("{event_id}: {e}"));
        assert_eq!(verified, Verified::All, "{event_id}: content hash");
        assert_eq!(
            format!("${}", reference_hash(&obj, &rules).unwrap()),
            event_id
        );
    }
    // A tampered event fails.
    let (_, _, json) = sqlx::query_as::<_, (String, String, String)>(
        "SELECT event_id, room_id, json FROM events WHERE type = 'm.room.message' LIMIT 1",
    )
    .fetch_one(&s.services().db.pool)
    .await
    .unwrap();
    let mut obj: CanonicalJsonObject = serde_json::from_str(&json).unwrap();
    obj.insert(
        "sender".into(),
        ruma::CanonicalJsonValue::String("@mallory:localhost".into()),
    );
    assert!(verify_event(&map, &obj, &RoomVersionId::V12.rules().unwrap()).is_err());
    let _ = rooms;
    s.stop().await;
}
