//! Reporting content: `POST /rooms/{id}/report/{event}` and `POST /rooms/{id}/report`.

use palabre::store::reports::ReportFilter;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

crate::both_backends!(report_events, report_rooms);

fn event_path(room: &str, event: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/report/{}",
        enc(room),
        enc(event)
    )
}

async fn report_events(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let dave = s.register("dave").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
            ]}),
        )
        .await;
    s.join(&bob, &room).await;
    let early = s.send_text(&alice, &room, "m1", "buy cheap watches").await;

    let (st, v) = s
        .post(
            &bob,
            &event_path(&room, &early),
            json!({"reason": "spam", "score": -100}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({}));
    // Reason and score are optional.
    let (st, v) = s.post(&bob, &event_path(&room, &early), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Not found: an unknown event, an event of another room, a reporter not in the room, a
    // reporter who joined after the event in a "joined" history room.
    let other = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&bob, &other).await;
    let elsewhere = s.send_text(&alice, &other, "m2", "elsewhere").await;
    s.join(&dave, &room).await;
    let cases = [
        (&bob, event_path(&room, "$nothing")),
        (&bob, event_path(&room, &elsewhere)),
        (&carol, event_path(&room, &early)),
        (&dave, event_path(&room, &early)),
        (&bob, event_path("!nowhere:localhost", &early)),
    ];
    for (u, path) in cases {
        let (st, v) = s.post(u, &path, json!({"reason": "x"})).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["errcode"], "M_NOT_FOUND");
    }
    // Dave can report what he sees.
    let late = s.send_text(&alice, &room, "m3", "after dave").await;
    let (st, _) = s.post(&dave, &event_path(&room, &late), json!({})).await;
    assert_eq!(st, StatusCode::OK);

    // Bad input.
    for score in [json!(1), json!(-101)] {
        let (st, v) = s
            .post(&bob, &event_path(&room, &early), json!({"score": score}))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{score}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM");
    }
    let (st, v) = s
        .post(&bob, &event_path(&room, &early), json!({"score": "bad"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errcode"], "M_BAD_JSON");
    let (st, v) = s
        .post(
            &bob,
            &event_path(&room, &early),
            json!({"reason": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["errcode"], "M_TOO_LARGE");
    let (st, v) = s
        .raw(
            reqwest::Method::POST,
            &event_path(&room, &early),
            Some(&bob.token),
            "{not json",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errcode"], "M_NOT_JSON");

    // What was stored: three reports, newest first.
    let db = &s.services().db;
    let all = db
        .list_reports(&ReportFilter::default(), 0, 10, true)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].user_id, dave.user_id);
    assert_eq!(all[0].event_id.as_deref(), Some(late.as_str()));
    let first = &all[2];
    assert_eq!(first.room_id, room);
    assert_eq!(first.event_id.as_deref(), Some(early.as_str()));
    assert_eq!(first.user_id, bob.user_id);
    assert_eq!(first.reason.as_deref(), Some("spam"));
    assert_eq!(first.score, Some(-100));
    assert!(first.received_ts > 0);
    assert_eq!(all[1].reason, None);
    assert_eq!(all[1].score, None);
    let bobs = ReportFilter {
        user_id: Some(&bob.user_id),
        ..Default::default()
    };
    assert_eq!(db.count_reports(&bobs).await.unwrap(), 2);
    let oldest = db.list_reports(&bobs, 1, 10, false).await.unwrap();
    assert_eq!(oldest.len(), 1, "offset skips the first");
    assert_eq!(oldest[0].id, all[1].id);
    assert_eq!(
        db.get_report(first.id)
            .await
            .unwrap()
            .unwrap()
            .reason
            .as_deref(),
        Some("spam")
    );
    s.stop().await;
}

async fn report_rooms(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let path = |r: &str| format!("/_matrix/client/v3/rooms/{}/report", enc(r));

    // The reporter need not be in the room.
    let (st, v) = s
        .post(&carol, &path(&room), json!({"reason": "scam ring"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A missing reason (optional in v1.13) reads as empty.
    let (st, _) = s.post(&alice, &path(&room), json!({})).await;
    assert_eq!(st, StatusCode::OK);

    let (st, v) = s
        .post(&carol, &path("!nowhere:localhost"), json!({"reason": "x"}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    let (st, v) = s
        .post(&carol, &path("not-a-room"), json!({"reason": "x"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s
        .post(&carol, &path(&room), json!({"reason": "y".repeat(5000)}))
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, _) = s
        .call(reqwest::Method::POST, &path(&room), None, Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let db = &s.services().db;
    let rooms_only = ReportFilter {
        events: Some(false),
        room_id: Some(&room),
        ..Default::default()
    };
    let reports = db.list_reports(&rooms_only, 0, 10, false).await.unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[0].user_id, carol.user_id);
    assert_eq!(reports[0].event_id, None);
    assert_eq!(reports[0].reason.as_deref(), Some("scam ring"));
    assert_eq!(reports[1].reason.as_deref(), Some(""));
    let events_only = ReportFilter {
        events: Some(true),
        ..Default::default()
    };
    assert_eq!(db.count_reports(&events_only).await.unwrap(), 0);
    s.stop().await;
}
