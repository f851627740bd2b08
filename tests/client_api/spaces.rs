//! Spaces: `GET /v1/rooms/{id}/hierarchy` (walk order, visibility, depth, suggested, pages).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(hierarchy_walk_and_visibility, hierarchy_pages);

async fn space(s: &TestServer, u: &User, name: &str) -> String {
    s.create_room(
        u,
        json!({"preset": "public_chat", "name": name, "creation_content": {"type": "m.space"}}),
    )
    .await
}

async fn add_child(s: &TestServer, u: &User, parent: &str, child: &str, content: Value) {
    let (st, v) = s
        .put(
            u,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                enc(parent),
                enc(child)
            ),
            content,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "space child: {v}");
}

fn hierarchy_path(root: &str, query: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/hierarchy?{query}", enc(root))
}

fn ids(v: &Value) -> Vec<String> {
    v["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms: {v}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

fn room<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {v}"))
}

async fn hierarchy_walk_and_visibility(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let via = json!(["localhost"]);

    // root ─┬─ a (public, order "a")
    //       ├─ sub (space, order "b") ─┬─ d (public)
    //       │                          └─ root (a loop)
    //       ├─ hidden (invite only)
    //       ├─ readable (invite only, world readable)
    //       ├─ restricted_ok (restricted to root members)
    //       ├─ restricted_no (restricted to a room bob is not in)
    //       ├─ no_via (child event without via), unknown (a room this server does not know)
    let root = space(&s, &alice, "Root").await;
    let a = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "A", "topic": "About A"}),
        )
        .await;
    let sub = space(&s, &alice, "Sub").await;
    let d = s
        .create_room(&alice, json!({"preset": "public_chat", "name": "D"}))
        .await;
    let hidden = s
        .create_room(&alice, json!({"preset": "private_chat", "name": "Hidden"}))
        .await;
    let readable = s
        .create_room(
            &alice,
            json!({"preset": "private_chat", "name": "Readable", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    let restricted = |allowed: &str| {
        json!({"preset": "private_chat", "initial_state": [{"type": "m.room.join_rules", "content": {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": allowed}]
        }}]})
    };
    let restricted_ok = s.create_room(&alice, restricted(&root)).await;
    let restricted_no = s.create_room(&alice, restricted(&hidden)).await;
    let no_via = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;

    add_child(
        &s,
        &alice,
        &root,
        &a,
        json!({"via": via, "order": "a", "suggested": true}),
    )
    .await;
    add_child(&s, &alice, &root, &sub, json!({"via": via, "order": "b"})).await;
    add_child(
        &s,
        &alice,
        &root,
        &hidden,
        json!({"via": via, "order": "c"}),
    )
    .await;
    add_child(
        &s,
        &alice,
        &root,
        &readable,
        json!({"via": via, "order": "d"}),
    )
    .await;
    add_child(
        &s,
        &alice,
        &root,
        &restricted_ok,
        json!({"via": via, "order": "e"}),
    )
    .await;
    add_child(
        &s,
        &alice,
        &root,
        &restricted_no,
        json!({"via": via, "order": "f"}),
    )
    .await;
    add_child(&s, &alice, &root, &no_via, json!({"via": []})).await;
    add_child(&s, &alice, &root, "!unknown:localhost", json!({"via": via})).await;
    add_child(&s, &alice, &sub, &d, json!({"via": via, "order": "a"})).await;
    add_child(&s, &alice, &sub, &root, json!({"via": via, "order": "b"})).await;
    s.join(&bob, &root).await;

    let (st, v) = s.get(&bob, &hierarchy_path(&root, "")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Depth first, children by `order` then timestamp: the sub-space's child comes before the
    // root's later children; the loop back to root, hidden rooms, rooms without via and unknown
    // rooms are left out.
    assert_eq!(
        ids(&v),
        vec![
            root.clone(),
            a.clone(),
            sub.clone(),
            d.clone(),
            readable.clone(),
            restricted_ok.clone()
        ]
    );
    assert!(v.get("next_batch").is_none(), "{v}");

    let r = room(&v, &root);
    assert_eq!(r["room_type"], "m.space");
    assert_eq!(r["name"], "Root");
    assert_eq!(r["num_joined_members"], 2);
    assert_eq!(r["join_rule"], "public");
    assert_eq!(r["world_readable"], false);
    let children = r["children_state"].as_array().unwrap();
    // Every child event with a via (eight minus the one with an empty via), stripped.
    assert_eq!(children.len(), 7, "{children:?}");
    assert_eq!(children[0]["state_key"], a.as_str());
    assert_eq!(children[1]["state_key"], sub.as_str());
    for c in children {
        assert_eq!(c["type"], "m.space.child");
        assert_eq!(c["sender"], alice.user_id.as_str());
        assert!(c["origin_server_ts"].as_i64().unwrap() > 0);
        assert!(c.get("event_id").is_none());
        assert!(c["state_key"] != no_via.as_str());
    }
    let ra = room(&v, &a);
    assert_eq!(ra["name"], "A");
    assert_eq!(ra["topic"], "About A");
    assert_eq!(ra["num_joined_members"], 1);
    assert_eq!(ra["guest_can_join"], false);
    assert!(ra.get("room_type").is_none());
    assert_eq!(ra["children_state"], json!([]));
    assert_eq!(room(&v, &readable)["world_readable"], true);
    assert_eq!(room(&v, &readable)["join_rule"], "invite");
    assert_eq!(room(&v, &restricted_ok)["join_rule"], "restricted");
    assert_eq!(
        room(&v, &sub)["children_state"].as_array().unwrap().len(),
        2
    );

    // Alice is in every room: she sees the hidden ones too.
    let (_, v) = s.get(&alice, &hierarchy_path(&root, "")).await;
    let all = ids(&v);
    assert!(
        all.contains(&hidden) && all.contains(&restricted_no),
        "{all:?}"
    );
    assert!(!all.contains(&no_via));
    assert_eq!(all.iter().filter(|r| **r == root).count(), 1, "no loops");

    // max_depth 1: the root's children, not the sub-space's.
    let (_, v) = s.get(&bob, &hierarchy_path(&root, "max_depth=1")).await;
    assert_eq!(
        ids(&v),
        vec![
            root.clone(),
            a.clone(),
            sub.clone(),
            readable.clone(),
            restricted_ok.clone()
        ]
    );
    let (_, v) = s.get(&bob, &hierarchy_path(&root, "max_depth=0")).await;
    assert_eq!(ids(&v), vec![root.clone()]);

    // suggested_only: only suggested children are walked and listed.
    let (_, v) = s
        .get(&bob, &hierarchy_path(&root, "suggested_only=true"))
        .await;
    assert_eq!(ids(&v), vec![root.clone(), a.clone()]);
    let listed = room(&v, &root)["children_state"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state_key"], a.as_str());

    // A room that is a member of a space the user can see, seen from below.
    let (st, v) = s.get(&bob, &hierarchy_path(&sub, "")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ids(&v)[..2], [sub.clone(), d.clone()]);

    // Refusals: a room bob may not see, an unknown room, bad parameters.
    let (st, v) = s.get(&bob, &hierarchy_path(&hidden, "")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let (st, v) = s.get(&bob, &hierarchy_path(&restricted_no, "")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = s.get(&bob, &hierarchy_path("!nowhere:localhost", "")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    for q in ["limit=0", "limit=-3", "max_depth=-1", "limit=many"] {
        let (st, v) = s.get(&bob, &hierarchy_path(&root, q)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{q}");
    }
    let (st, _) = s
        .call(reqwest::Method::GET, &hierarchy_path(&root, ""), None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Bob leaves the root: the room restricted to its members disappears for him.
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&root)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&bob, &hierarchy_path(&root, "")).await;
    assert!(!ids(&v).contains(&restricted_ok), "{v}");
    assert!(ids(&v).contains(&readable));
    s.stop().await;
}

async fn hierarchy_pages(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let root = space(&s, &alice, "Root").await;
    let mut children = vec![];
    for i in 0..7 {
        let r = s
            .create_room(
                &alice,
                json!({"preset": "public_chat", "name": format!("R{i}")}),
            )
            .await;
        add_child(
            &s,
            &alice,
            &root,
            &r,
            json!({"via": ["localhost"], "order": format!("{i:02}")}),
        )
        .await;
        children.push(r);
    }
    let mut expected = vec![root.clone()];
    expected.extend(children.iter().cloned());

    // Pages of 3: 3 + 3 + 2, in order, no repeats, the last one without next_batch.
    let (st, p1) = s.get(&bob, &hierarchy_path(&root, "limit=3")).await;
    assert_eq!(st, StatusCode::OK, "{p1}");
    assert_eq!(ids(&p1), expected[..3]);
    let t1 = p1["next_batch"].as_str().expect("next_batch").to_owned();
    let (st, p2) = s
        .get(
            &bob,
            &hierarchy_path(&root, &format!("limit=3&from={}", enc(&t1))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p2}");
    assert_eq!(ids(&p2), expected[3..6]);
    let t2 = p2["next_batch"].as_str().expect("next_batch").to_owned();
    assert_ne!(t1, t2);
    let (_, p3) = s
        .get(
            &bob,
            &hierarchy_path(&root, &format!("limit=3&from={}", enc(&t2))),
        )
        .await;
    assert_eq!(ids(&p3), expected[6..]);
    assert!(p3.get("next_batch").is_none(), "{p3}");
    // A token can be used again (a retried request gets the same page).
    let (_, again) = s
        .get(
            &bob,
            &hierarchy_path(&root, &format!("limit=3&from={}", enc(&t1))),
        )
        .await;
    assert_eq!(ids(&again), expected[3..6]);
    // A different page size continues from the same place.
    let (_, big) = s
        .get(
            &bob,
            &hierarchy_path(&root, &format!("limit=50&from={}", enc(&t1))),
        )
        .await;
    assert_eq!(ids(&big), expected[3..]);

    // Invalid tokens: made up, another user's, other parameters, another root.
    let other_root = space(&s, &alice, "Other").await;
    let bad = [
        (&bob, root.clone(), "from=nonsense".to_owned()),
        (&alice, root.clone(), format!("from={}", enc(&t1))),
        (
            &bob,
            root.clone(),
            format!("from={}&suggested_only=true", enc(&t1)),
        ),
        (&bob, root.clone(), format!("from={}&max_depth=3", enc(&t1))),
        (&bob, other_root.clone(), format!("from={}", enc(&t1))),
    ];
    for (u, r, q) in bad {
        let (st, v) = s.get(u, &hierarchy_path(&r, &q)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{q}");
    }

    // The default page holds everything here; limits above 50 are capped, not refused.
    let (st, all) = s.get(&bob, &hierarchy_path(&root, "limit=1000")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ids(&all), expected);
    s.stop().await;
}
