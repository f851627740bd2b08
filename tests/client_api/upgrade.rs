//! Room upgrades: `POST /rooms/{id}/upgrade`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    upgrade_replaces_room,
    upgrade_refusals,
    upgrade_by_moderator,
    upgrade_to_v12
);

async fn state(s: &TestServer, u: &User, room: &str, kind: &str) -> (StatusCode, Value) {
    s.get(
        u,
        &format!("/_matrix/client/v3/rooms/{}/state/{kind}", enc(room)),
    )
    .await
}

async fn upgrade(s: &TestServer, u: &User, room: &str, body: Value) -> (StatusCode, Value) {
    s.post(
        u,
        &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(room)),
        body,
    )
    .await
}

async fn upgrade_replaces_room(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let old = s
        .create_room(
            &alice,
            json!({
                "room_version": "10",
                "preset": "public_chat",
                "visibility": "public",
                "name": "Town square",
                "topic": "Everything",
                "room_alias_name": "square",
                "initial_state": [
                    {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                    {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
                ]
            }),
        )
        .await;
    s.join(&bob, &old).await;
    s.join(&carol, &old).await;
    let (st, _) = s
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&old)),
            json!({"user_id": carol.user_id, "reason": "spam"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let last = s.send_text(&alice, &old, "t1", "last words").await;
    let (_, old_pl) = state(&s, &alice, &old, "m.room.power_levels").await;
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let (st, v) = upgrade(&s, &alice, &old, json!({"new_version": "11"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new = v["replacement_room"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // The new room: version, predecessor (with the old room's last event), copied state.
    let (_, create) = state(&s, &alice, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(create["predecessor"]["event_id"], last.as_str());
    assert!(create.get("type").is_none());
    assert_eq!(
        state(&s, &alice, &new, "m.room.name").await.1["name"],
        "Town square"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.topic").await.1["topic"],
        "Everything"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.join_rules").await.1["join_rule"],
        "public"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.encryption").await.1["algorithm"],
        "m.megolm.v1.aes-sha2"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.history_visibility").await.1["history_visibility"],
        "world_readable"
    );
    // No preset state the old room did not have.
    assert_eq!(
        state(&s, &alice, &new, "m.room.guest_access").await.0,
        StatusCode::NOT_FOUND
    );
    // The old power levels, unchanged, and the ban.
    let (_, new_pl) = state(&s, &alice, &new, "m.room.power_levels").await;
    assert_eq!(new_pl, old_pl);
    let (_, ban) = state(
        &s,
        &alice,
        &new,
        &format!("m.room.member/{}", enc(&carol.user_id)),
    )
    .await;
    assert_eq!(ban["membership"], "ban");
    assert_eq!(ban["reason"], "spam");

    // The old room: tombstone (seen by bob's sync), restricted power levels.
    let (_, tomb) = state(&s, &bob, &old, "m.room.tombstone").await;
    assert_eq!(tomb["replacement_room"], new.as_str());
    assert!(tomb["body"].as_str().is_some());
    let sync = s.sync(&bob, Some(&since), 5_000).await;
    let events = sync["rooms"]["join"][&old]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let seen = events
        .iter()
        .find(|e| e["type"] == "m.room.tombstone")
        .unwrap_or_else(|| panic!("no tombstone in {sync}"));
    assert_eq!(seen["content"]["replacement_room"], new.as_str());
    let (_, restricted) = state(&s, &alice, &old, "m.room.power_levels").await;
    assert_eq!(restricted["events_default"], 50);
    assert_eq!(restricted["invite"], 50);
    let (st, _) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/b1",
                enc(&old)
            ),
            json!({"msgtype": "m.text", "body": "still here?"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "ordinary members can no longer talk"
    );

    // The alias, the canonical alias and the directory listing moved.
    let alias = "#square:localhost";
    let (_, v) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/directory/room/{}", enc(alias)),
        )
        .await;
    assert_eq!(v["room_id"], new.as_str());
    assert_eq!(
        state(&s, &alice, &new, "m.room.canonical_alias").await.1["alias"],
        alias
    );
    assert!(state(&s, &alice, &old, "m.room.canonical_alias").await.1["alias"].is_null());
    let vis = |r: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(r));
    assert_eq!(s.get(&bob, &vis(&new)).await.1["visibility"], "public");
    assert_eq!(s.get(&bob, &vis(&old)).await.1["visibility"], "private");
    let (_, aliases) = s
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/aliases", enc(&new)),
        )
        .await;
    assert_eq!(aliases["aliases"], json!([alias]));

    // Members follow the tombstone: bob joins the new room and talks.
    s.join(&bob, &new).await;
    s.send_text(&bob, &new, "b2", "moved").await;
    // The banned user cannot.
    let (st, _) = s
        .post(
            &carol,
            &format!("/_matrix/client/v3/join/{}", enc(&new)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn upgrade_refusals(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(
            &alice,
            json!({"room_version": "11", "preset": "public_chat"}),
        )
        .await;
    s.join(&bob, &room).await;

    let (st, v) = upgrade(&s, &bob, &room, json!({"new_version": "12"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let (st, v) = upgrade(&s, &carol, &room, json!({"new_version": "12"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "not a member: {v}");
    for version in ["99", "1", "org.example.custom"] {
        let (st, v) = upgrade(&s, &alice, &room, json!({"new_version": version})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{version}: {v}");
        assert_eq!(v["errcode"], "M_UNSUPPORTED_ROOM_VERSION");
    }
    let (st, v) = upgrade(&s, &alice, &room, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errcode"], "M_BAD_JSON");
    let (st, v) = upgrade(
        &s,
        &alice,
        "!nowhere:localhost",
        json!({"new_version": "12"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = upgrade(
        &s,
        &alice,
        &room,
        json!({"new_version": "11", "additional_creators": [bob.user_id]}),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "no additional creators before v12: {v}"
    );
    assert_eq!(v["errcode"], "M_INVALID_PARAM");
    let (st, v) = upgrade(
        &s,
        &alice,
        &room,
        json!({"new_version": "12", "additional_creators": ["not a user"]}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Nothing was tombstoned by the refused attempts.
    let (st, _) = state(&s, &alice, &room, "m.room.tombstone").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A moderator allowed to tombstone but below the level some state needs: raised while the
/// state is copied, back to their own level afterwards.
async fn upgrade_by_moderator(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({
                "room_version": "11",
                "preset": "private_chat",
                "invite": [bob.user_id],
                "initial_state": [{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
            }),
        )
        .await;
    s.join(&bob, &room).await;
    let (_, mut pl) = state(&s, &alice, &room, "m.room.power_levels").await;
    pl["users"][&bob.user_id] = json!(60);
    pl["events"]["m.room.tombstone"] = json!(60);
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.power_levels",
                enc(&room)
            ),
            pl.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (st, v) = upgrade(&s, &bob, &room, json!({"new_version": "11"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new = v["replacement_room"].as_str().unwrap().to_owned();
    // m.room.encryption needs 100: copied thanks to the temporary raise.
    assert_eq!(
        state(&s, &bob, &new, "m.room.encryption").await.1["algorithm"],
        "m.megolm.v1.aes-sha2"
    );
    let (_, new_pl) = state(&s, &bob, &new, "m.room.power_levels").await;
    assert_eq!(new_pl, pl, "the old levels are restored");
    assert_eq!(new_pl["users"][&bob.user_id], 60);
    assert_eq!(new_pl["users"][&alice.user_id], 100);
    // Bob created the replacement (v11: the create event's sender is the creator).
    let (_, all) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&new)),
        )
        .await;
    let create = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .unwrap();
    assert_eq!(create["sender"], bob.user_id.as_str());
    s.stop().await;
}

async fn upgrade_to_v12(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    // A v11 space: alice is creator with a users entry of 100.
    let old = s
        .create_room(
            &alice,
            json!({"room_version": "11", "preset": "public_chat", "name": "Space",
                   "creation_content": {"type": "m.space"}, "invite": [bob.user_id]}),
        )
        .await;
    s.join(&bob, &old).await;
    let child = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let (st, _) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                enc(&old),
                enc(&child)
            ),
            json!({"via": ["localhost"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let (st, v) = upgrade(
        &s,
        &alice,
        &old,
        json!({"new_version": "12", "additional_creators": [bob.user_id]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new = v["replacement_room"].as_str().unwrap().to_owned();
    assert!(!new.contains(':'), "a v12 room id: {new}");
    let (_, create) = state(&s, &alice, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["type"], "m.space");
    assert_eq!(create["predecessor"], json!({"room_id": old}));
    assert_eq!(create["additional_creators"], json!([bob.user_id]));
    // Creators have no entry in v12 power levels.
    let (_, pl) = state(&s, &alice, &new, "m.room.power_levels").await;
    assert!(pl["users"].get(&alice.user_id).is_none(), "{pl}");
    assert!(pl["users"].get(&bob.user_id).is_none(), "{pl}");
    // The space keeps its child.
    let (st, c) = state(&s, &alice, &new, &format!("m.space.child/{}", enc(&child))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(c["via"], json!(["localhost"]));

    // Bob, an additional creator, joins and upgrades the v12 room again (v12 to v12).
    s.join(&bob, &new).await;
    let (st, v) = upgrade(&s, &bob, &new, json!({"new_version": "12"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let newer = v["replacement_room"].as_str().unwrap().to_owned();
    let (_, create) = state(&s, &bob, &newer, "m.room.create").await;
    assert_eq!(create["predecessor"]["room_id"], new.as_str());
    let (_, tomb) = state(&s, &bob, &new, "m.room.tombstone").await;
    assert_eq!(tomb["replacement_room"], newer.as_str());
    s.stop().await;
}
