//! The history purge and the redaction of a user's events through HTTP: a purge up to an
//! event and up to a time takes the older events out of /messages, leaves the current state
//! and the room working (send, a new member joins and syncs), keeps local events stored unless
//! asked; its errors; a user's messages redacted across rooms, others' untouched; and a purge
//! left unfinished by a killed process resumed by the next one.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    purge_up_to_event,
    purge_up_to_ts_keeps_local_events,
    purge_errors,
    redact_user_across_rooms,
    redact_as_admin_reports_failures,
    purge_resumes_after_kill,
);

/// The bodies of the messages /messages returns, newest first.
async fn message_bodies(s: &TestServer, u: &User, room: &str) -> Vec<String> {
    let (st, v) = s
        .get(
            u,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=200",
                enc(room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Waits for a job's status to leave `active` (and `scheduled`); returns it.
async fn settled(s: &TestServer, admin: &User, path: &str) -> Value {
    for _ in 0..200 {
        let (st, v) = s.get(admin, path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["status"] != "active" && v["status"] != "scheduled" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} did not finish");
}

/// The room's current state still holds its name and its members.
async fn state_intact(s: &TestServer, u: &User, room: &str, members: &[&User]) {
    let r = enc(room);
    let (st, v) = s
        .get(
            u,
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.name/"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "History", "{v}");
    let (st, v) = s
        .get(u, &format!("/_matrix/client/v3/rooms/{r}/joined_members"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for m in members {
        assert!(v["joined"].get(&m.user_id).is_some(), "{}: {v}", m.user_id);
    }
}

/// The room goes on: a message is sent, a new member joins and sees it (and the room's name)
/// in their first sync.
async fn still_works(s: &TestServer, sender: &User, room: &str, newcomer: &str) {
    s.send_text(sender, room, "after-purge", "after").await;
    let carol = s.register(newcomer).await;
    s.join(&carol, room).await;
    let sync = s.sync(&carol, None, 0).await;
    let joined = &sync["rooms"]["join"][room];
    assert!(joined.is_object(), "{sync}");
    assert!(
        timeline_bodies(&sync, room).contains(&"after".to_owned()),
        "{sync}"
    );
    let named = ["state", "timeline"].iter().any(|k| {
        joined[k]["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["type"] == "m.room.name"))
    });
    assert!(named, "{sync}");
    s.send_text(&carol, room, "carol-1", "hello from carol")
        .await;
    assert_eq!(message_bodies(s, sender, room).await[0], "hello from carol");
}

async fn purge_up_to_event(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "name": "History", "preset": "public_chat" }),
        )
        .await;
    s.join(&bob, &room).await;
    let mut old = vec![];
    for i in 0..6 {
        old.push(
            s.send_text(&alice, &room, &format!("old{i}"), &format!("old a{i}"))
                .await,
        );
        old.push(
            s.send_text(&bob, &room, &format!("old{i}"), &format!("old b{i}"))
                .await,
        );
    }
    let point = s.send_text(&alice, &room, "keep0", "keep 0").await;
    s.send_text(&bob, &room, "keep1", "keep 1").await;
    let (st, v) = s
        .post(
            &admin,
            &format!(
                "/_synapse/admin/v1/purge_history/{}/{}",
                enc(&room),
                enc(&point)
            ),
            json!({ "delete_local_events": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["purge_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/purge_history_status/{id}"),
    )
    .await;
    assert_eq!(v, json!({ "status": "complete" }));
    assert_eq!(
        message_bodies(&s, &alice, &room).await,
        vec!["keep 1", "keep 0"]
    );
    // Deleted, not hidden: the old messages are gone from the database.
    for id in &old {
        assert!(
            s.services().db.get_event(id).await.unwrap().is_none(),
            "{id}"
        );
    }
    state_intact(&s, &bob, &room, &[&alice, &bob]).await;
    let (st, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{}", enc(&room)))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "History", "{v}");
    assert_eq!(v["joined_members"], 2, "{v}");
    still_works(&s, &alice, &room, "carol").await;
    // A second purge up to the same point has nothing left to do.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/purge_history/{}", enc(&room)),
            json!({ "purge_up_to_event_id": point, "delete_local_events": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["purge_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/purge_history_status/{id}"),
    )
    .await;
    assert_eq!(v["status"], "complete", "{v}");
    assert!(message_bodies(&s, &alice, &room)
        .await
        .contains(&"keep 0".to_owned()));
    s.stop().await;
}

async fn purge_up_to_ts_keeps_local_events(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "name": "History", "preset": "public_chat" }),
        )
        .await;
    s.join(&bob, &room).await;
    let mut old = vec![];
    for i in 0..5 {
        old.push(
            s.send_text(&bob, &room, &format!("old{i}"), &format!("old {i}"))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let ts = palabre::util::now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 0..3 {
        s.send_text(&alice, &room, &format!("new{i}"), &format!("new {i}"))
            .await;
    }
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/purge_history/{}", enc(&room)),
            json!({ "purge_up_to_ts": ts }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["purge_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/purge_history_status/{id}"),
    )
    .await;
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(
        message_bodies(&s, &bob, &room).await,
        vec!["new 2", "new 1", "new 0"]
    );
    // Local events are kept (out of the timeline) without delete_local_events.
    for id in &old {
        let ev = s.services().db.get_event(id).await.unwrap();
        assert!(ev.is_some_and(|e| e.is_outlier()), "{id}");
    }
    state_intact(&s, &alice, &room, &[&alice, &bob]).await;
    // Up to a time after everything: the latest event always stays.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/purge_history/{}", enc(&room)),
            json!({ "purge_up_to_ts": palabre::util::now_ms() + 3_600_000, "delete_local_events": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["purge_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/purge_history_status/{id}"),
    )
    .await;
    assert_eq!(v["status"], "complete", "{v}");
    assert_eq!(message_bodies(&s, &bob, &room).await, vec!["new 2"]);
    state_intact(&s, &alice, &room, &[&alice, &bob]).await;
    still_works(&s, &bob, &room, "carol").await;
    s.stop().await;
}

async fn purge_errors(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let other = s.create_room(&alice, json!({})).await;
    let here = s.send_text(&alice, &room, "t1", "here").await;
    let there = s.send_text(&alice, &other, "t1", "there").await;
    let path = format!("/_synapse/admin/v1/purge_history/{}", enc(&room));
    let cases = [
        (
            json!({ "purge_up_to_event_id": "$nope" }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "purge_up_to_event_id": there }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
        (
            json!({ "purge_up_to_event_id": here, "purge_up_to_ts": 1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "purge_up_to_ts": "yesterday" }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in cases {
        let (st, v) = s.post(&admin, &path, body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (st, v) = s
        .post(
            &admin,
            &format!(
                "/_synapse/admin/v1/purge_history/{}/{}",
                enc(&room),
                enc(&there)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .post(
            &admin,
            "/_synapse/admin/v1/purge_history/!nope:localhost",
            json!({ "purge_up_to_ts": 1 }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .post(&alice, &path, json!({ "purge_up_to_event_id": here }))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let (st, _) = s
        .get(&admin, "/_synapse/admin/v1/purge_history_status/nope")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .get(&alice, "/_synapse/admin/v1/purge_history_status/nope")
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The redaction endpoint's own errors.
    let user_path = format!("/_synapse/admin/v1/user/{}/redact", enc(&alice.user_id));
    let (st, _) = s.post(&alice, &user_path, json!({ "rooms": [] })).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.post(&admin, &user_path, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(&admin, &user_path, json!({ "rooms": [], "limit": 0 }))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .get(&admin, "/_synapse/admin/v1/user/redact_status/nope")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn redact_user_across_rooms(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mut rooms = vec![];
    let (mut spam, mut fine) = (vec![], vec![]);
    for n in 0..2 {
        let room = s
            .create_room(
                &bob,
                json!({ "name": format!("R{n}"), "preset": "public_chat" }),
            )
            .await;
        s.join(&alice, &room).await;
        for i in 0..4 {
            spam.push((
                room.clone(),
                s.send_text(&alice, &room, &format!("s{i}"), &format!("spam {i}"))
                    .await,
            ));
        }
        fine.push((room.clone(), s.send_text(&bob, &room, "f", "fine").await));
        rooms.push(room);
    }
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/user/{}/redact", enc(&alice.user_id)),
            json!({ "rooms": [], "reason": "spam" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["redact_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/user/redact_status/{id}"),
    )
    .await;
    assert_eq!(v, json!({ "status": "completed", "failed_redactions": {} }));
    for (room, ev) in &spam {
        let (st, v) = s
            .get(
                &bob,
                &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(ev)),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["content"], json!({}), "{v}");
        assert_eq!(
            v["unsigned"]["redacted_because"]["content"]["reason"], "spam",
            "{v}"
        );
    }
    for (room, ev) in &fine {
        let (_, v) = s
            .get(
                &alice,
                &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(ev)),
            )
            .await;
        assert_eq!(v["content"]["body"], "fine", "{v}");
    }
    for room in &rooms {
        let bodies = message_bodies(&s, &bob, room).await;
        assert_eq!(bodies, vec!["fine"], "{room}");
    }
    // Again, on one room named: nothing is left to redact.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/user/{}/redact", enc(&alice.user_id)),
            json!({ "rooms": [rooms[0]] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["redact_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/user/redact_status/{id}"),
    )
    .await;
    assert_eq!(v, json!({ "status": "completed", "failed_redactions": {} }));
    let (_, tasks) = s
        .get(
            &admin,
            "/_synapse/admin/v1/scheduled_tasks?action_name=redact_all_events",
        )
        .await;
    assert!(
        tasks["scheduled_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["progress"]["total"] == 0),
        "{tasks}"
    );
    s.stop().await;
}

async fn purge_resumes_after_kill(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(b, dir.path()).await;
    let port = free_port();
    let (proc, s, admin) = crate::crash::spawn_with_admin(dir.path(), &db, port).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "History" })).await;
    let mut point = String::new();
    for i in 0..20 {
        let id = s
            .send_text(&alice, &room, &format!("t{i}"), &format!("m{i}"))
            .await;
        if i == 15 {
            point = id;
        }
    }
    drop(proc); // SIGKILL
    let store = palabre::store::Db::connect(&db, 2).await.unwrap();
    let (_, depth) = store.event_room_depth(&point).await.unwrap().unwrap();
    store.close().await;
    let params = json!({ "depth": depth, "delete_local_events": true });
    crate::crash::leave_active_job(&db, "resumeme", "purge_history", &room, params).await;
    let _proc = crate::crash::spawn(dir.path(), &db, port).await;
    let mut last = Value::Null;
    for _ in 0..200 {
        let (st, v) = s
            .get(&admin, "/_synapse/admin/v1/purge_history_status/resumeme")
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        last = v;
        if last["status"] != "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, json!({ "status": "complete" }));
    let (_, v) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(&room)
            ),
        )
        .await;
    let bodies: Vec<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["m19", "m18", "m17", "m16", "m15"], "{v}");
    s.send_text(&alice, &room, "after", "after").await;
    let (_, v) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
        )
        .await;
    assert_eq!(v["name"], "History", "{v}");
}

async fn redact_as_admin_reports_failures(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&bob, json!({ "preset": "public_chat" }))
        .await;
    s.join(&alice, &room).await;
    let spam = [
        s.send_text(&alice, &room, "s1", "spam 1").await,
        s.send_text(&alice, &room, "s2", "spam 2").await,
    ];
    let path = format!("/_synapse/admin/v1/user/{}/redact", enc(&alice.user_id));
    // Redacted by the admin, who is not in the room: every redaction fails, reported by event.
    let (st, v) = s
        .post(&admin, &path, json!({ "rooms": [room], "use_admin": true }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["redact_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/user/redact_status/{id}"),
    )
    .await;
    assert_eq!(v["status"], "completed", "{v}");
    for ev in &spam {
        assert!(v["failed_redactions"][ev].is_string(), "{ev}: {v}");
    }
    // The admin joins with the power to redact: the redactions are theirs.
    s.join(&admin, &room).await;
    let (st, v) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
                enc(&room)
            ),
            json!({ "users": { admin.user_id.clone(): 50 } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &admin,
            &path,
            json!({ "rooms": [room], "use_admin": true, "limit": 10 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["redact_id"].as_str().unwrap().to_owned();
    let v = settled(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/user/redact_status/{id}"),
    )
    .await;
    assert_eq!(v, json!({ "status": "completed", "failed_redactions": {} }));
    for ev in &spam {
        let (_, v) = s
            .get(
                &bob,
                &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(ev)),
            )
            .await;
        assert_eq!(v["content"], json!({}), "{v}");
        assert_eq!(
            v["unsigned"]["redacted_because"]["sender"],
            admin.user_id.as_str(),
            "{v}"
        );
    }
    s.stop().await;
}
