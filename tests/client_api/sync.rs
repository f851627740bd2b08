use reqwest::StatusCode;
use serde_json::json;

use crate::common::{enc, timeline_bodies, Backend, TestServer};

crate::both_backends!(
    filters_and_lazy_loading,
    state_deltas_and_summary,
    restart_keeps_everything,
    presence_switch,
    profile_change_is_not_a_new_join
);

async fn filters_and_lazy_loading(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    for i in 0..4 {
        s.send_text(&alice, &room, &format!("a{i}"), &format!("a{i}"))
            .await;
    }
    // Stored filter: 2 events, lazy-loaded members, only messages.
    let filter = json!({"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}, "state": {"lazy_load_members": true}}});
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/user/{}/filter", enc(&bob.user_id)),
            filter,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let id = v["filter_id"].as_str().unwrap().to_owned();
    let (st, got) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/v3/user/{}/filter/{}",
                enc(&bob.user_id),
                id
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["room"]["timeline"]["limit"], 2);
    let (st, _) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/user/{}/filter/{}",
                enc(&bob.user_id),
                id
            ),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, sync) = s
        .get(&bob, &format!("/_matrix/client/v3/sync?filter={id}"))
        .await;
    assert_eq!(timeline_bodies(&sync, &room), vec!["a2", "a3"]);
    let r = &sync["rooms"]["join"][&room];
    assert_eq!(r["timeline"]["limited"], true);
    let members: Vec<&str> = r["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"@alice:localhost") && members.contains(&"@bob:localhost"),
        "{members:?}"
    );
    assert!(
        !members.contains(&"@carol:localhost"),
        "carol sent nothing: lazy-loaded away"
    );
    // Inline filter with not_senders.
    let inline =
        enc(&json!({"room": {"timeline": {"not_senders": ["@alice:localhost"]}}}).to_string());
    let (_, sync) = s
        .get(&bob, &format!("/_matrix/client/v3/sync?filter={inline}"))
        .await;
    assert!(sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["sender"] != "@alice:localhost"));
    s.stop().await;
}

async fn state_deltas_and_summary(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    let first = s.sync(&bob, None, 0).await;
    let r = &first["rooms"]["join"][&room];
    assert_eq!(r["summary"]["m.joined_member_count"], 2);
    assert_eq!(r["summary"]["m.heroes"], json!(["@alice:localhost"]));
    let since = first["next_batch"].as_str().unwrap().to_owned();
    // More than a timeline's worth of events including a state change: the state change comes
    // in `state` since the timeline is limited.
    let (st, _) = s
        .put(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for i in 0..12 {
        s.send_text(&alice, &room, &format!("x{i}"), "filler").await;
    }
    let inc = s.sync(&bob, Some(&since), 0).await;
    let r = &inc["rooms"]["join"][&room];
    assert_eq!(r["timeline"]["limited"], true);
    assert!(
        r["state"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "renamed"),
        "{r}"
    );
    s.stop().await;
}

async fn restart_keeps_everything(b: Backend) {
    // Run one server, stop it, start a second one on the same database.
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::database_url(b, dir.path()).await;
    let mut cfg = crate::common::test_config(dir.path());
    cfg.database_url = Some(url.clone());
    let run = palabre::server::start(cfg.clone()).await.unwrap();
    let s = TestServer {
        base: format!("http://{}", run.addr),
        running: Some(run),
        http: reqwest::Client::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({"name": "persist"})).await;
    for i in 0..3 {
        s.send_text(&alice, &room, &format!("p{i}"), &format!("p{i}"))
            .await;
    }
    let token = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.stop().await;

    let run = palabre::server::start(cfg).await.unwrap();
    let s = TestServer {
        base: format!("http://{}", run.addr),
        running: Some(run),
        http: reqwest::Client::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    // Same token still valid, same room state, sending continues the DAG.
    s.send_text(&alice, &room, "after", "after restart").await;
    let inc = s.sync(&alice, Some(&token), 0).await;
    assert_eq!(timeline_bodies(&inc, &room), vec!["after restart"]);
    let (_, name) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
        )
        .await;
    assert_eq!(name["name"], "persist");
    s.stop().await;
    drop(dir);
}

async fn presence_switch(b: Backend) {
    // On: presence travels to users sharing a room, and only to them.
    let s = TestServer::start_with(b, |c| c.presence = true).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let eve = s.register("eve").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    let since = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id));
    let (st, _) = s
        .put(
            &bob,
            &path,
            json!({"presence": "unavailable", "status_msg": "in a meeting"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.put(&alice, &path, json!({"presence": "online"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.put(&bob, &path, json!({"presence": "dancing"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let inc = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/sync?since={}&timeout=0&set_presence=offline",
                enc(&since)
            ),
        )
        .await
        .1;
    let evs = inc["presence"]["events"].as_array().unwrap();
    let bob_p = evs
        .iter()
        .find(|e| e["sender"] == bob.user_id.as_str())
        .expect("bob's presence");
    assert_eq!(bob_p["content"]["presence"], "unavailable");
    assert_eq!(bob_p["content"]["status_msg"], "in a meeting");
    let (st, v) = s.get(&alice, &path).await;
    assert_eq!(
        (st, v["presence"].as_str()),
        (StatusCode::OK, Some("unavailable"))
    );
    let (st, _) = s.get(&eve, &path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;

    // Off (the default, as Tchap runs): nothing is shared.
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"invite": [bob.user_id]}))
        .await;
    s.join(&bob, &room).await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id));
    let (st, _) = s
        .put(
            &bob,
            &path,
            json!({"presence": "online", "status_msg": "hi"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&alice, &path).await;
    assert_eq!(v["presence"], "offline");
    let sync = s.sync(&alice, None, 0).await;
    assert!(sync["presence"]["events"].as_array().unwrap().is_empty());
    s.stop().await;
}

/// A displayname change re-sends the member event, not the whole room: the next sync of a
/// room with a long history is not a fresh, limited timeline.
async fn profile_change_is_not_a_new_join(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    for i in 0..30 {
        s.send_text(&alice, &room, &format!("h{i}"), "history")
            .await;
    }
    let since = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            json!({"displayname": "Alice B."}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut next = since.clone();
    let mut seen = false;
    for _ in 0..100 {
        let inc = s.sync(&alice, Some(&next), 0).await;
        let r = &inc["rooms"]["join"][&room];
        let evs = r["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if evs
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["content"]["displayname"] == "Alice B.")
        {
            assert_eq!(r["timeline"]["limited"], false, "{r}");
            assert!(
                evs.iter().all(|e| e["type"] != "m.room.message"),
                "old history re-sent: {r}"
            );
            seen = true;
            break;
        }
        next = inc["next_batch"].as_str().unwrap().to_owned();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the new member event arrives");
    s.stop().await;
}
