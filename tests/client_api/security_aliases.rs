//! Security review mends, aliases: only joined members of a room may create an alias for it
//! (Synapse's `require_membership_for_aliases`, on by default); server admins always may.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn put_alias(s: &TestServer, u: &User, localpart: &str, room: &str) -> (StatusCode, Value) {
    s.put(
        u,
        &format!(
            "/_matrix/client/v3/directory/room/{}",
            enc(&format!("#{localpart}:localhost"))
        ),
        json!({ "room_id": room }),
    )
    .await
}

/// A user made from the command line (admin or not) and logged in.
async fn cli_user(s: &TestServer, name: &str, admin: bool) -> User {
    s.services()
        .accounts()
        .create_user_cli(name, "correct horse 1", admin)
        .await
        .expect("user created");
    let (st, v) = s.login(password(name, "correct horse 1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    }
}

async fn members_only(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mallory = s.register("mallory").await;
    let invited = s.register("ivan").await;
    let gone = s.register("gone").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.invite(&alice, &room, &invited).await;
    s.join(&gone, &room).await;
    let (st, _) = s
        .post(
            &gone,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Not joined (never there, invited only, left): 403 M_FORBIDDEN, no alias made.
    for (u, name) in [(&mallory, "evil"), (&invited, "invited"), (&gone, "gone")] {
        let (st, v) = put_alias(&s, u, name, &room).await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{name}: {v}"
        );
        let (st, _) = s
            .get(
                &alice,
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc(&format!("#{name}:localhost"))
                ),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{name}");
    }
    // A member may.
    let (st, v) = put_alias(&s, &alice, "lobby", &room).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.join(&mallory, &room).await;
    let (st, v) = put_alias(&s, &mallory, "joined", &room).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A server admin may without being in the room.
    let admin = cli_user(&s, "boss", true).await;
    let (st, v) = put_alias(&s, &admin, "admins", &room).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)),
        )
        .await;
    let mut aliases: Vec<&str> = v["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    aliases.sort_unstable();
    assert_eq!(
        aliases,
        ["#admins:localhost", "#joined:localhost", "#lobby:localhost"]
    );
    s.stop().await;
}

async fn open_when_configured(b: Backend) {
    let s = TestServer::start_with(b, |c| c.require_membership_for_aliases = false).await;
    let alice = s.register("alice").await;
    let mallory = s.register("mallory").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, v) = put_alias(&s, &mallory, "anyone", &room).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .get(
            &alice,
            "/_matrix/client/v3/directory/room/%23anyone%3Alocalhost",
        )
        .await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    s.stop().await;
}

crate::both_backends!(members_only, open_when_configured);
