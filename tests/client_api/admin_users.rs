//! The user admin API through HTTP, as synapse-admin, Ketesa and Draupnir call it: who may
//! call it, the user list and its pagination, create-or-modify, the admin flag, lock,
//! suspension, deactivation, whois, devices.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    non_admins_refused,
    user_list_walk,
    create_and_modify,
    lock_suspend_deactivate,
    whois_devices_rooms,
);

/// Every admin endpoint family: 401 without a token, 403 `M_FORBIDDEN` for a plain user.
async fn non_admins_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let u = enc(&alice.user_id);
    let room = s.create_room(&alice, json!({})).await;
    let r = enc(&room);
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/_synapse/admin/v2/users".into(), None),
        (Method::GET, "/_synapse/admin/v3/users".into(), None),
        (Method::GET, format!("/_synapse/admin/v2/users/{u}"), None),
        (
            Method::PUT,
            format!("/_synapse/admin/v2/users/{u}"),
            Some(json!({"admin": true})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/admin"),
            None,
        ),
        (
            Method::PUT,
            format!("/_synapse/admin/v1/users/{u}/admin"),
            Some(json!({"admin": true})),
        ),
        (Method::GET, format!("/_synapse/admin/v1/whois/{u}"), None),
        (
            Method::POST,
            format!("/_synapse/admin/v1/deactivate/{u}"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v1/reset_password/{u}"),
            Some(json!({"new_password": "x"})),
        ),
        (
            Method::PUT,
            format!("/_synapse/admin/v1/suspend/{u}"),
            Some(json!({"suspend": true})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/joined_rooms"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/memberships"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/accountdata"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/pushers"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v2/users/{u}/devices"),
            None,
        ),
        (
            Method::DELETE,
            format!("/_synapse/admin/v2/users/{u}/devices/{}", alice.device_id),
            None,
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v2/users/{u}/delete_devices"),
            Some(json!({"devices": []})),
        ),
        (
            Method::GET,
            "/_synapse/admin/v1/username_available?username=x".into(),
            None,
        ),
        (Method::GET, "/_synapse/admin/v1/rooms".into(), None),
        (Method::GET, format!("/_synapse/admin/v1/rooms/{r}"), None),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{r}/members"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{r}/state"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{r}/block"),
            None,
        ),
        (
            Method::PUT,
            format!("/_synapse/admin/v1/rooms/{r}/block"),
            Some(json!({"block": true})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{r}/forward_extremities"),
            None,
        ),
        (
            Method::DELETE,
            format!("/_synapse/admin/v2/rooms/{r}"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/_synapse/admin/v1/rooms/{r}"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v2/rooms/{r}/delete_status"),
            None,
        ),
        (
            Method::GET,
            "/_synapse/admin/v2/rooms/delete_status/abc".into(),
            None,
        ),
        (Method::GET, "/_synapse/admin/v1/event_reports".into(), None),
        (
            Method::GET,
            "/_synapse/admin/v1/event_reports/1".into(),
            None,
        ),
        (
            Method::DELETE,
            "/_synapse/admin/v1/event_reports/1".into(),
            None,
        ),
        (Method::GET, "/_synapse/admin/v1/user_reports".into(), None),
        (
            Method::GET,
            "/_synapse/admin/v1/scheduled_tasks".into(),
            None,
        ),
    ];
    for (m, path, body) in &endpoints {
        let (st, v) = s.call(m.clone(), path, None, body.clone()).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{m} {path} without a token: {v}"
        );
        let (st, v) = s
            .call(m.clone(), path, Some(&alice.token), body.clone())
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path} as a plain user: {v}");
        assert_eq!(v["errcode"], "M_FORBIDDEN", "{m} {path}: {v}");
    }
    // Nothing changed: alice is no admin, her room is not blocked.
    let admin = s.admin_user("boss").await;
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/users/{u}/admin"))
        .await;
    assert_eq!(v["admin"], false);
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/rooms/{r}/block"))
        .await;
    assert_eq!(v["block"], false);
    let (st, v) = s.get(&admin, "/_synapse/admin/v1/server_version").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["server_version"].is_string(), "{v}");
    s.stop().await;
}

/// Walks the list with `limit`/`next_token`: every user once, `total` right; filters and
/// ordering; v2 hides deactivated accounts, v3 shows them unless asked otherwise.
async fn user_list_walk(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let mut expected = HashSet::from([admin.user_id.clone()]);
    for i in 0..7 {
        expected.insert(s.register(&format!("walker{i}")).await.user_id);
    }
    let mut seen = vec![];
    let mut from = "0".to_owned();
    loop {
        let (st, v) = s
            .get(
                &admin,
                &format!("/_synapse/admin/v2/users?limit=3&from={from}"),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["total"], 8, "{v}");
        let users = v["users"].as_array().unwrap();
        assert!(users.len() <= 3);
        for u in users {
            for key in [
                "name",
                "admin",
                "deactivated",
                "displayname",
                "creation_ts",
                "is_guest",
                "shadow_banned",
                "locked",
            ] {
                assert!(u.get(key).is_some(), "{key} missing: {u}");
            }
            seen.push(u["name"].as_str().unwrap().to_owned());
        }
        match v.get("next_token") {
            Some(t) => from = t.as_str().expect("next_token is a string").to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "each user once: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by name");
    // Backwards, by name.
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v2/users?dir=b&limit=1")
        .await;
    assert_eq!(v["users"][0]["name"], "@walker6:localhost", "{v}");
    // A substring of the user id.
    let (_, v) = s.get(&admin, "/_synapse/admin/v2/users?name=ALKER3").await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["users"][0]["name"], "@walker3:localhost");
    // Admins only.
    let (_, v) = s.get(&admin, "/_synapse/admin/v2/users?admins=true").await;
    assert_eq!(v["total"], 1, "{v}");
    // A deactivated account: hidden by v2 unless asked for, shown by v3.
    let (st, _) = s
        .post(
            &admin,
            &format!(
                "/_synapse/admin/v1/deactivate/{}",
                enc("@walker0:localhost")
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&admin, "/_synapse/admin/v2/users").await;
    assert_eq!(v["total"], 7, "{v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v2/users?deactivated=true")
        .await;
    assert_eq!(v["total"], 8, "{v}");
    let (_, v) = s.get(&admin, "/_synapse/admin/v3/users").await;
    assert_eq!(v["total"], 8, "{v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v3/users?deactivated=true")
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["users"][0]["deactivated"], 1);
    // Bad parameters are 400 M_INVALID_PARAM, never 500.
    for q in [
        "limit=-1",
        "from=x",
        "dir=sideways",
        "order_by=password_hash",
        "admins=maybe",
    ] {
        let (st, v) = s
            .get(&admin, &format!("/_synapse/admin/v2/users?{q}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{q}: {v}");
    }
    s.stop().await;
}

/// `PUT /v2/users/{id}` creates (201) then modifies (200); the admin flag both ways.
async fn create_and_modify(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let path = format!("/_synapse/admin/v2/users/{}", enc("@carol:localhost"));
    let (st, v) = s
        .put(
            &admin,
            &path,
            json!({
                "password": "Carol's password 1",
                "displayname": "Carol C",
                "threepids": [{"medium": "email", "address": "Carol@Example.org"}],
                "user_type": "bot",
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "@carol:localhost");
    assert_eq!(v["displayname"], "Carol C");
    assert_eq!(v["user_type"], "bot");
    assert_eq!(v["threepids"][0]["address"], "carol@example.org", "{v}");
    let (st, login) = s.login(password("carol", "Carol's password 1")).await;
    assert_eq!(st, StatusCode::OK, "{login}");
    // Modify: the display name changes, the rest stays.
    let (st, v) = s
        .put(&admin, &path, json!({ "displayname": "Carol D" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["displayname"], "Carol D");
    assert_eq!(v["user_type"], "bot");
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v["displayname"], "Carol D");
    assert_eq!(v["admin"], false);
    // A new password logs the other sessions out (logout_devices defaults to true).
    let carol_token = login["access_token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .put(
            &admin,
            &path,
            json!({ "password": "Carol's new password 2" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&carol_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.login(password("carol", "Carol's new password 2")).await;
    assert_eq!(st, StatusCode::OK);
    // The admin flag.
    let flag = format!("/_synapse/admin/v1/users/{}/admin", enc("@carol:localhost"));
    let (st, _) = s.put(&admin, &flag, json!({ "admin": true })).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&admin, &flag).await;
    assert_eq!(v["admin"], true);
    let own = format!("/_synapse/admin/v1/users/{}/admin", enc(&admin.user_id));
    let (st, v) = s.put(&admin, &own, json!({ "admin": false })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no self-demotion: {v}");
    // Another server's user, a bad user type, an unknown user.
    let (st, v) = s
        .put(
            &admin,
            &format!("/_synapse/admin/v2/users/{}", enc("@x:elsewhere.org")),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = s.put(&admin, &path, json!({ "user_type": "wizard" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v2/users/{}", enc("@nobody:localhost")),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    // username_available and the threepid lookup.
    let (_, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/username_available?username=free",
        )
        .await;
    assert_eq!(v["available"], true, "{v}");
    let (st, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/username_available?username=carol",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errcode"], "M_USER_IN_USE");
    let (_, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/threepid/email/users/carol%40example.org",
        )
        .await;
    assert_eq!(v["user_id"], "@carol:localhost", "{v}");
    s.stop().await;
}

/// A locked account is refused everywhere (401 `M_USER_LOCKED`) until unlocked; a suspended
/// one may read but not send; a deactivated one cannot log in, and comes back with a password.
async fn lock_suspend_deactivate(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let dave = s.register("dave").await;
    let room = s.create_room(&dave, json!({})).await;
    let path = format!("/_synapse/admin/v2/users/{}", enc(&dave.user_id));
    let whoami = |t: String| {
        let s = &s;
        async move {
            s.call(
                Method::GET,
                "/_matrix/client/v3/account/whoami",
                Some(&t),
                None,
            )
            .await
        }
    };
    // Lock.
    let (st, v) = s.put(&admin, &path, json!({ "locked": true })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["locked"], true);
    let (st, v) = whoami(dave.token.clone()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errcode"], "M_USER_LOCKED");
    let (st, v) = s.login(password("dave", "correct horse 1")).await;
    assert_eq!(v["errcode"], "M_USER_LOCKED", "{st} {v}");
    s.put(&admin, &path, json!({ "locked": false })).await;
    let (st, _) = whoami(dave.token.clone()).await;
    assert_eq!(st, StatusCode::OK, "unlocked: the session works again");
    // Suspend.
    let suspend = format!("/_synapse/admin/v1/suspend/{}", enc(&dave.user_id));
    let (st, v) = s.put(&admin, &suspend, json!({ "suspend": true })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[format!("user_{}_suspended", dave.user_id)], true, "{v}");
    let (st, v) = s
        .put(
            &dave,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                enc(&room)
            ),
            json!({ "msgtype": "m.text", "body": "hi" }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_USER_SUSPENDED");
    let (st, _) = s
        .post(&dave, "/_matrix/client/v3/createRoom", json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = whoami(dave.token.clone()).await;
    assert_eq!(st, StatusCode::OK, "a suspended account still reads");
    s.put(&admin, &suspend, json!({ "suspend": false })).await;
    s.send_text(&dave, &room, "t2", "back").await;
    // Deactivate, then reactivate with a password.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/deactivate/{}", enc(&dave.user_id)),
            json!({ "erase": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id_server_unbind_result"], "success");
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v["deactivated"], true);
    assert_eq!(v["erased"], true);
    let (st, _) = whoami(dave.token.clone()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, v) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/users/{}/joined_rooms",
                enc(&dave.user_id)
            ),
        )
        .await;
    assert_eq!(v["total"], 0, "a deactivated account left its rooms: {v}");
    let (st, _) = s.put(&admin, &path, json!({ "deactivated": false })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "reactivation needs a password");
    let (st, v) = s
        .put(
            &admin,
            &path,
            json!({ "deactivated": false, "password": "Dave is back 3" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["deactivated"], false);
    let (st, v) = s.login(password("dave", "Dave is back 3")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // reset_password.
    let (st, v) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/reset_password/{}", enc(&dave.user_id)),
            json!({ "new_password": "Fourth password 4" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.login(password("dave", "Fourth password 4")).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

/// whois (admin and client paths), devices (list, get, rename, delete), joined rooms,
/// memberships, account data.
async fn whois_devices_rooms(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let erin = s.register("erin").await;
    let other = s.register("frank").await;
    let u = enc(&erin.user_id);
    let room = s.create_room(&erin, json!({})).await;
    s.put(
        &erin,
        &format!("/_matrix/client/v3/user/{u}/account_data/org.example.x"),
        json!({"a": 1}),
    )
    .await;
    let (st, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/whois/{u}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], erin.user_id);
    assert!(v["devices"][&erin.device_id]["sessions"].is_array(), "{v}");
    // The client whois: oneself or an admin.
    let (st, _) = s
        .get(&erin, &format!("/_matrix/client/v3/admin/whois/{u}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .get(&other, &format!("/_matrix/client/v3/admin/whois/{u}"))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/users/{u}/joined_rooms"),
        )
        .await;
    assert_eq!(v["joined_rooms"], json!([room]), "{v}");
    assert_eq!(v["total"], 1);
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/users/{u}/memberships"))
        .await;
    assert_eq!(v["memberships"][&room], "join", "{v}");
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/users/{u}/accountdata"))
        .await;
    assert_eq!(v["account_data"]["global"]["org.example.x"]["a"], 1, "{v}");
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/users/{u}/pushers"))
        .await;
    assert_eq!(v["total"], 0, "{v}");
    // Devices.
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v2/users/{u}/devices"))
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["devices"][0]["device_id"], erin.device_id);
    let dev = format!("/_synapse/admin/v2/users/{u}/devices/{}", erin.device_id);
    let (st, _) = s
        .put(&admin, &dev, json!({ "display_name": "Erin's phone" }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&admin, &dev).await;
    assert_eq!(v["display_name"], "Erin's phone", "{v}");
    let (st, _) = s.call(Method::DELETE, &dev, Some(&admin.token), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the deleted device's token is gone"
    );
    let (st, _) = s.get(&admin, &dev).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}
