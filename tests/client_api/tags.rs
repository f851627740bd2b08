//! Room tagging: `/user/{id}/rooms/{room}/tags`, delivered as `m.tag` room account data.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(room_tags);

fn tag_account_data(sync: &Value, room: &str) -> Option<Value> {
    sync["rooms"]["join"][room]["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.tag")
        .map(|e| e["content"].clone())
}

async fn room_tags(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    let tags = |u: &User| {
        format!(
            "/_matrix/client/v3/user/{}/rooms/{}/tags",
            enc(&u.user_id),
            enc(&room)
        )
    };
    let tag = |u: &User, t: &str| format!("{}/{}", tags(u), enc(t));

    let (st, v) = s.get(&alice, &tags(&alice)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({ "tags": {} }));
    let since = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let (st, v) = s
        .put(&alice, &tag(&alice, "m.favourite"), json!({"order": 0.25}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.put(&alice, &tag(&alice, "u.work/ops"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&alice, &tags(&alice)).await;
    assert_eq!(
        v,
        json!({ "tags": { "m.favourite": {"order": 0.25}, "u.work/ops": {} } })
    );

    // Clients get them in /sync as the room's m.tag account data.
    let sync = s.sync(&alice, Some(&since), 5_000).await;
    assert_eq!(
        tag_account_data(&sync, &room).expect("m.tag in sync"),
        json!({ "tags": { "m.favourite": {"order": 0.25}, "u.work/ops": {} } })
    );
    let since = sync["next_batch"].as_str().unwrap().to_owned();

    // Replace, delete, delete again (nothing to do).
    s.put(&alice, &tag(&alice, "m.favourite"), json!({"order": 1}))
        .await;
    let (st, _) = s
        .call(
            Method::DELETE,
            &tag(&alice, "u.work/ops"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::DELETE,
            &tag(&alice, "u.work/ops"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let expected = json!({ "tags": { "m.favourite": {"order": 1} } });
    assert_eq!(s.get(&alice, &tags(&alice)).await.1, expected);
    let sync = s.sync(&alice, Some(&since), 5_000).await;
    assert_eq!(tag_account_data(&sync, &room), Some(expected));

    // Concurrent changes of one user do not lose each other.
    let paths: Vec<String> = (0..12).map(|i| tag(&alice, &format!("u.t{i}"))).collect();
    let puts = paths.iter().map(|p| s.put(&alice, p, json!({})));
    for (st, v) in futures::future::join_all(puts).await {
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (_, v) = s.get(&alice, &tags(&alice)).await;
    assert_eq!(v["tags"].as_object().unwrap().len(), 13, "{v}");

    // Refusals: someone else's tags, bad order, too long a name, a bad room id.
    let (st, v) = s.get(&bob, &tags(&alice)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = s.put(&bob, &tag(&alice, "m.lowpriority"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::DELETE,
            &tag(&alice, "m.favourite"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    for (body, code) in [
        (json!({"order": 1.5}), "M_INVALID_PARAM"),
        (json!({"order": -0.1}), "M_INVALID_PARAM"),
        (json!({"order": "first"}), "M_BAD_JSON"),
        (json!([1]), "M_BAD_JSON"),
    ] {
        let (st, v) = s.put(&alice, &tag(&alice, "u.x"), body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["errcode"], code, "{body}");
    }
    let (st, v) = s
        .put(&alice, &tag(&alice, &"t".repeat(256)), json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s
        .put(&alice, &tag(&alice, &"t".repeat(255)), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "255 bytes is allowed");
    let (st, _) = s
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/user/{}/rooms/not-a-room/tags",
                enc(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Bob's tags on the same room are his own.
    assert_eq!(s.get(&bob, &tags(&bob)).await.1, json!({ "tags": {} }));
    s.stop().await;
}
