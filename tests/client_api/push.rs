//! Push rules, unread counts, /notifications and HTTP pushers (with a fake push gateway).

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

fn counts(sync: &Value, room: &str) -> (i64, i64) {
    let c = &sync["rooms"]["join"][room]["unread_notifications"];
    (
        c["notification_count"].as_i64().unwrap_or(-1),
        c["highlight_count"].as_i64().unwrap_or(-1),
    )
}

async fn push_rules_crud(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let (st, v) = s.get(&alice, "/_matrix/client/v3/pushrules/").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["global"]["override"][0]["rule_id"], ".m.rule.master");
    assert!(v["global"]["content"].is_array());
    let since = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let rule = "/_matrix/client/v3/pushrules/global/content/cats";
    let (st, v) = s
        .put(
            &alice,
            rule,
            json!({ "pattern": "cat*", "actions": ["notify", { "set_tweak": "highlight" }] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.get(&alice, rule).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["pattern"], "cat*");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["default"], false);
    // A second rule placed before the first.
    let (st, v) = s
        .put(
            &alice,
            "/_matrix/client/v3/pushrules/global/content/dogs?before=cats",
            json!({ "pattern": "dog", "actions": ["notify"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, all) = s.get(&alice, "/_matrix/client/v3/pushrules/global/").await;
    let ids: Vec<&str> = all["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[..2], &["dogs", "cats"]);

    let (st, _) = s
        .put(
            &alice,
            &format!("{rule}/enabled"),
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&alice, &format!("{rule}/enabled")).await;
    assert_eq!(v["enabled"], false);
    let (st, _) = s
        .put(&alice, &format!("{rule}/actions"), json!({ "actions": [] }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&alice, &format!("{rule}/actions")).await;
    assert_eq!(v["actions"], json!([]));
    // Server-default rules can be disabled but not replaced or deleted.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    let (st, _) = s
        .put(
            &alice,
            &format!("{master}/enabled"),
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.put(&alice, master, json!({ "actions": [] })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .call(reqwest::Method::DELETE, master, Some(&alice.token), None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Errors.
    let (st, _) = s
        .get(&alice, "/_matrix/client/v3/pushrules/global/content/nope")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .get(&alice, "/_matrix/client/v3/pushrules/global/weird/cats")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/pushrules/global/content/x",
            json!({ "actions": ["notify"] }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "content rules need a pattern");
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/pushrules/global/content/y?after=nope",
            json!({ "pattern": "y", "actions": [] }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/pushrules/global/room/notaroom",
            json!({ "actions": [] }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/pushrules/global/content/dogs",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get(&alice, "/_matrix/client/v3/pushrules/global/content/dogs")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Clients learn about changes through account data.
    let sync = s.sync(&alice, Some(&since), 0).await;
    let pr = sync["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned()
        .expect("m.push_rules in sync");
    assert!(pr["content"]["global"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["rule_id"] == "cats"));
    // And an initial sync carries them once.
    let sync = s.sync(&alice, None, 0).await;
    let n = sync["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.push_rules")
        .count();
    assert_eq!(n, 1);
    s.stop().await;
}

async fn unread_counts(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "trusted_private_chat", "invite": [bob.user_id] }),
        )
        .await;
    s.join(&bob, &room).await;
    let sync = s.sync(&bob, None, 0).await;
    assert_eq!(counts(&sync, &room), (0, 0));
    let since = sync["next_batch"].as_str().unwrap().to_owned();

    s.send_text(&alice, &room, "1", "hello").await;
    s.send_text(&alice, &room, "2", "are you there").await;
    let sync = s.sync(&bob, Some(&since), 0).await;
    assert_eq!(
        counts(&sync, &room),
        (2, 0),
        "{}",
        sync["rooms"]["join"][&room]
    );
    // A mention highlights.
    let (st, v) = s
        .put(&alice, &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/3", enc(&room)),
             json!({ "msgtype": "m.text", "body": "bob: look", "m.mentions": { "user_ids": [bob.user_id] } }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let mention = v["event_id"].as_str().unwrap().to_owned();
    let sync = s.sync(&bob, Some(&since), 0).await;
    assert_eq!(counts(&sync, &room), (3, 1));
    let since = sync["next_batch"].as_str().unwrap().to_owned();
    // Alice's own messages do not count for her.
    let (_, n) = s.get(&alice, "/_matrix/client/v3/notifications").await;
    assert_eq!(counts(&s.sync(&alice, None, 0).await, &room), (0, 0), "{n}");

    // /notifications lists them, newest first, highlight filter works.
    let (st, n) = s.get(&bob, "/_matrix/client/v3/notifications").await;
    assert_eq!(st, StatusCode::OK);
    let list = n["notifications"].as_array().unwrap();
    // Three messages and the invite (read since bob joined).
    assert_eq!(list.len(), 4, "{n}");
    assert_eq!(list[0]["event"]["event_id"], mention);
    assert_eq!(list[0]["read"], false);
    assert_eq!(list[0]["room_id"], room);
    assert_eq!(list[3]["event"]["content"]["membership"], "invite");
    assert_eq!(list[3]["read"], true);
    let (_, n) = s
        .get(&bob, "/_matrix/client/v3/notifications?only=highlight")
        .await;
    assert_eq!(n["notifications"].as_array().unwrap().len(), 1);
    let (_, n) = s
        .get(&bob, "/_matrix/client/v3/notifications?limit=3")
        .await;
    let next = n["next_token"].as_str().unwrap().to_owned();
    let (_, n2) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/notifications?limit=3&from={next}"),
        )
        .await;
    assert_eq!(n2["notifications"].as_array().unwrap().len(), 1);

    // A receipt on the mention resets both counts.
    let (st, _) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&mention)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let sync = s.sync(&bob, Some(&since), 0).await;
    assert_eq!(
        counts(&sync, &room),
        (0, 0),
        "{}",
        sync["rooms"]["join"][&room]
    );
    let (_, n) = s.get(&bob, "/_matrix/client/v3/notifications").await;
    assert_eq!(n["notifications"][0]["read"], true);

    // Threads: counted apart when the client asks for it, and a threaded receipt clears only
    // its thread.
    let root = s.send_text(&alice, &room, "4", "root").await;
    let (_, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/5",
                enc(&room)
            ),
            json!({ "msgtype": "m.text", "body": "in thread",
                     "m.relates_to": { "rel_type": "m.thread", "event_id": root } }),
        )
        .await;
    let reply = v["event_id"].as_str().unwrap().to_owned();
    let filter = enc(
        &json!({ "room": { "timeline": { "unread_thread_notifications": true } } }).to_string(),
    );
    let (_, sync) = s
        .get(&bob, &format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert_eq!(counts(&sync, &room), (1, 0));
    assert_eq!(
        sync["rooms"]["join"][&room]["unread_thread_notifications"][&root]["notification_count"], 1,
        "{}",
        sync["rooms"]["join"][&room]
    );
    let (st, _) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&reply)
            ),
            json!({ "thread_id": root }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, sync) = s
        .get(&bob, &format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert_eq!(counts(&sync, &room), (1, 0), "main timeline still unread");
    assert!(sync["rooms"]["join"][&room]["unread_thread_notifications"]
        .get(&root)
        .is_none());
    // Without the filter option, everything is in one count.
    let sync = s.sync(&bob, None, 0).await;
    assert_eq!(counts(&sync, &room), (1, 0));
    assert!(sync["rooms"]["join"][&room]
        .get("unread_thread_notifications")
        .is_none());

    // Disabling the one-to-one rule stops new notifications.
    let (st, _) = s
        .put(
            &bob,
            "/_matrix/client/v3/pushrules/global/underride/.m.rule.room_one_to_one/enabled",
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .put(
            &bob,
            "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled",
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.send_text(&alice, &room, "6", "ignored").await;
    assert_eq!(counts(&s.sync(&bob, None, 0).await, &room), (1, 0));
    s.stop().await;
}

/// A push gateway: records notify bodies, rejects the pushkey "gone".
async fn fake_gateway() -> (String, Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    use axum::{routing::post, Json, Router};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/_matrix/push/v1/notify",
        post(move |Json(body): Json<Value>| {
            let log = log.clone();
            async move {
                let keys: Vec<String> = body["notification"]["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["pushkey"].as_str().map(str::to_owned))
                    .collect();
                log.lock().unwrap().push(body);
                let rejected: Vec<String> = keys.into_iter().filter(|k| k == "gone").collect();
                Json(json!({ "rejected": rejected }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/_matrix/push/v1/notify",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, task)
}

fn pusher(pushkey: &str, url: &str, format: Option<&str>) -> Value {
    let mut data = json!({ "url": url });
    if let Some(f) = format {
        data["format"] = json!(f);
    }
    json!({
        "pushkey": pushkey, "kind": "http", "app_id": "fr.gouv.tchap", "app_display_name": "Tchap",
        "device_display_name": "phone", "lang": "fr", "data": data,
    })
}

async fn pushers_deliver(b: Backend) {
    let (url, seen, gateway) = fake_gateway().await;
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "trusted_private_chat", "invite": [bob.user_id], "name": "Projet" }),
        )
        .await;
    s.join(&bob, &room).await;

    // Validation.
    let (st, _) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            pusher("k", "http://127.0.0.1:1/elsewhere", None),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            json!({ "kind": "http", "app_id": "a" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            pusher("phone-1", &url, None),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            with(
                pusher("gone", &url, Some("event_id_only")),
                json!({ "append": true }),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, list) = s.get(&bob, "/_matrix/client/v3/pushers").await;
    assert_eq!(list["pushers"].as_array().unwrap().len(), 2, "{list}");

    let first = s.send_text(&alice, &room, "1", "bonjour").await;
    let (_, v) = s
        .put(&alice, &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/2", enc(&room)),
             json!({ "msgtype": "m.text", "body": "bob!", "m.mentions": { "user_ids": [bob.user_id] } }))
        .await;
    let second = v["event_id"].as_str().unwrap().to_owned();

    // Full format to phone-1: both events, in order, with counts and tweaks.
    eventually(|| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|n| n["notification"]["devices"][0]["pushkey"] == "phone-1")
                .count()
                >= 2
        }
    })
    .await;
    let bodies: Vec<Value> = seen.lock().unwrap().clone();
    let full: Vec<&Value> = bodies
        .iter()
        .map(|b| &b["notification"])
        .filter(|n| n["devices"][0]["pushkey"] == "phone-1")
        .collect();
    assert_eq!(full[0]["event_id"], first);
    assert_eq!(full[0]["room_id"], room);
    assert_eq!(full[0]["type"], "m.room.message");
    assert_eq!(full[0]["sender"], alice.user_id);
    assert_eq!(full[0]["room_name"], "Projet");
    assert_eq!(full[0]["content"]["body"], "bonjour");
    // The badge is the count when the push is sent: 1 or 2 here.
    assert!(full[0]["counts"]["unread"].as_i64().unwrap() >= 1);
    assert_eq!(full[0]["devices"][0]["app_id"], "fr.gouv.tchap");
    assert!(
        full[0]["devices"][0]["data"].get("url").is_none(),
        "url is not sent to the gateway"
    );
    assert_eq!(full[1]["event_id"], second);
    assert_eq!(full[1]["counts"]["unread"], 2);
    assert_eq!(full[1]["devices"][0]["tweaks"]["highlight"], true);
    assert_eq!(full[1]["prio"], "high");
    // event_id_only to the other pushkey, which the gateway rejects: the pusher goes away.
    let slim: Vec<&Value> = bodies
        .iter()
        .map(|b| &b["notification"])
        .filter(|n| n["devices"][0]["pushkey"] == "gone")
        .collect();
    assert!(!slim.is_empty());
    assert!(
        slim[0].get("content").is_none() && slim[0].get("sender").is_none(),
        "{}",
        slim[0]
    );
    assert_eq!(slim[0]["event_id"], first);
    eventually(|| async {
        let (_, list) = s.get(&bob, "/_matrix/client/v3/pushers").await;
        list["pushers"].as_array().unwrap().len() == 1
    })
    .await;
    let (_, list) = s.get(&bob, "/_matrix/client/v3/pushers").await;
    assert_eq!(list["pushers"][0]["pushkey"], "phone-1");

    // Alice's own pusher hears nothing about her own messages; kind null deletes.
    let (st, _) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            json!({ "pushkey": "phone-1", "app_id": "fr.gouv.tchap", "kind": null }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, list) = s.get(&bob, "/_matrix/client/v3/pushers").await;
    assert!(list["pushers"].as_array().unwrap().is_empty());
    s.stop().await;
    gateway.abort();
}

/// Delivery resumes after a gateway outage, in order, without duplicates.
async fn pushers_retry(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "trusted_private_chat", "invite": [bob.user_id] }),
        )
        .await;
    s.join(&bob, &room).await;
    // Reserve a port, register the pusher on it, and only then start the gateway there.
    let addr = format!("127.0.0.1:{}", crate::common::free_port());
    let url = format!("http://{addr}/_matrix/push/v1/notify");
    let (st, _) = s
        .post(
            &bob,
            "/_matrix/client/v3/pushers/set",
            pusher("p", &url, None),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut sent = vec![];
    for i in 0..3 {
        sent.push(
            s.send_text(&alice, &room, &format!("m{i}"), &format!("m{i}"))
                .await,
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The gateway comes up.
    use axum::{routing::post, Json, Router};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/_matrix/push/v1/notify",
        post(move |Json(body): Json<Value>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(body);
                Json(json!({ "rejected": [] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let gateway = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    eventually(|| {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() >= 3 }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["notification"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, sent, "all delivered once, in order");
    s.stop().await;
    gateway.abort();
}

crate::both_backends!(
    push_rules_crud,
    unread_counts,
    pushers_deliver,
    pushers_retry
);
