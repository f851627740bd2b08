//! The user admin API's powers through HTTP: shadow ban (messages and invites answered, sent
//! nowhere), rate-limit overrides that really lift or set the limit, login as a user (off by
//! default), invite and join counts, device creation, and shared-secret registration with its
//! HMAC and single-use nonces.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    experimental_features_all_off,
    shadow_ban_sends_nowhere,
    ratelimit_override_applies,
    login_as_and_counts,
    shared_secret_registration,
);

async fn messages(s: &TestServer, u: &User, room: &str) -> Vec<String> {
    let (st, v) = s
        .get(
            u,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
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
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

async fn shadow_ban_sends_nowhere(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let path = format!("/_synapse/admin/v1/users/{}/shadow_ban", enc(&bob.user_id));
    let (st, v) = s.post(&admin, &path, json!({})).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v2/users/{}", enc(&bob.user_id)),
        )
        .await;
    assert_eq!(
        v["shadow_banned"], true,
        "as Synapse's details: a boolean: {v}"
    );
    // Answered with an event id; nobody sees it.
    let (st, v) = s
        .put(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                enc(&room)
            ),
            json!({ "msgtype": "m.text", "body": "spam" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["event_id"].as_str().unwrap().starts_with('$'));
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(messages(&s, &alice, &room).await.is_empty());
    let (_, v) = s.get(&carol, "/_matrix/client/v3/sync").await;
    assert!(
        v["rooms"]["invite"].get(&room).is_none(),
        "no invite reached carol: {v}"
    );
    // A room created with invites: made, the invites sent nowhere.
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/createRoom",
            json!({ "invite": [carol.user_id] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(&carol, "/_matrix/client/v3/sync").await;
    assert!(
        v["rooms"]["invite"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{v}"
    );
    // Lifted: sent again.
    let (st, _) = s
        .call(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    s.send_text(&bob, &room, "t2", "hello").await;
    assert_eq!(messages(&s, &alice, &room).await, vec!["hello".to_owned()]);
    let (st, _) = s.post(&bob, &path, json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn ratelimit_override_applies(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.rate_limits.message = palabre::config::RateLimit {
            per_second: 0.01,
            burst: 2.0,
        };
    })
    .await;
    let admin = s.admin_user("boss").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&bob, json!({})).await;
    let send = |i: usize| {
        let (s, bob, room) = (&s, &bob, &room);
        async move {
            s.put(
                bob,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/m{i}",
                    enc(room)
                ),
                json!({ "msgtype": "m.text", "body": "x" }),
            )
            .await
            .0
        }
    };
    let mut statuses = vec![];
    for i in 0..3 {
        statuses.push(send(i).await);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let path = format!(
        "/_synapse/admin/v1/users/{}/override_ratelimit",
        enc(&bob.user_id)
    );
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v, json!({}));
    let (st, v) = s
        .post(
            &admin,
            &path,
            json!({ "messages_per_second": 0, "burst_count": 0 }),
        )
        .await;
    assert_eq!(
        (st, v),
        (
            StatusCode::OK,
            json!({ "messages_per_second": 0, "burst_count": 0 })
        )
    );
    for i in 10..30 {
        assert_eq!(send(i).await, StatusCode::OK, "no limit for bob now");
    }
    let (st, _) = s
        .post(&admin, &path, json!({ "messages_per_second": -1 }))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, v) = s.get(&admin, &path).await;
    assert_eq!(v, json!({ "messages_per_second": 0, "burst_count": 0 }));
    let (st, v) = s
        .call(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    assert_eq!(
        send(40).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the server's limit again"
    );
    s.stop().await;
}

async fn login_as_and_counts(b: Backend) {
    let off = TestServer::start(b).await;
    let admin = off.admin_user("boss").await;
    let bob = off.register("bob").await;
    let (st, v) = off
        .post(
            &admin,
            &format!("/_synapse/admin/v1/users/{}/login", enc(&bob.user_id)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "off by default: {v}");
    off.stop().await;

    let s = TestServer::start_with(b, |c| c.admin.login_as_user = true).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let login = format!("/_synapse/admin/v1/users/{}/login", enc(&bob.user_id));
    let (st, v) = s.post(&admin, &login, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let puppet = User {
        user_id: bob.user_id.clone(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: String::new(),
    };
    let (_, v) = s.get(&puppet, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(v["user_id"], bob.user_id);
    let (_, v) = s.get(&bob, "/_matrix/client/v3/devices").await;
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["display_name"] == format!("Admin session ({})", admin.user_id)),
        "{v}"
    );
    let (st, _) = s
        .post(
            &admin,
            &format!("/_synapse/admin/v1/users/{}/login", enc(&admin.user_id)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.post(&admin, &login, json!({ "valid_until_ms": 5 })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Counts.
    let r1 = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let r2 = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    for u in [&bob, &carol] {
        s.post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&r1)),
            json!({ "user_id": u.user_id }),
        )
        .await;
    }
    let (_, v) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/users/{}/sent_invite_count",
                enc(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(v, json!({ "invite_count": 2 }));
    let later = palabre::util::now_ms() + 60_000;
    let (_, v) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/users/{}/sent_invite_count?from_ts={later}",
                enc(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(v, json!({ "invite_count": 0 }));
    s.join(&bob, &r1).await;
    s.post(
        &bob,
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&r1)),
        json!({}),
    )
    .await;
    s.join(&bob, &r1).await;
    s.join(&bob, &r2).await;
    let (_, v) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/users/{}/cumulative_joined_room_count",
                enc(&bob.user_id)
            ),
        )
        .await;
    assert_eq!(v, json!({ "cumulative_joined_room_count": 2 }));
    // A device made by an admin.
    let devices = format!("/_synapse/admin/v2/users/{}/devices", enc(&carol.user_id));
    let (st, v) = s
        .post(&admin, &devices, json!({ "device_id": "MADEBYADMIN" }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, v) = s.get(&admin, &devices).await;
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == "MADEBYADMIN"),
        "{v}"
    );
    let (st, _) = s.post(&admin, &devices, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

fn mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    let admin = if admin { "admin" } else { "notadmin" };
    m.update(format!("{nonce}\0{user}\0{password}\0{admin}").as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn shared_secret_registration(b: Backend) {
    let off = TestServer::start(b).await;
    let (st, _) = off
        .call(Method::GET, "/_synapse/admin/v1/register", None, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "off without a secret");
    off.stop().await;

    let s = TestServer::start_with(b, |c| {
        c.admin.registration_shared_secret = Some("s3cret".into())
    })
    .await;
    let n = nonce(&s).await;
    let body = |n: &str, mac: String| json!({ "nonce": n, "username": "ops", "password": "correct horse 1", "admin": true, "displayname": "Ops", "mac": mac });
    // A wrong MAC: refused, and the nonce is spent.
    let (st, _) = s
        .call(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body(&n, mac("wrong", &n, "ops", "correct horse 1", true))),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body(&n, mac("s3cret", &n, "ops", "correct horse 1", true))),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a nonce serves once");
    // The admin flag is covered by the MAC.
    let n = nonce(&s).await;
    let (st, _) = s
        .call(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body(&n, mac("s3cret", &n, "ops", "correct horse 1", false))),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let n = nonce(&s).await;
    let (st, v) = s
        .call(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body(&n, mac("s3cret", &n, "ops", "correct horse 1", true))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], "@ops:localhost");
    assert_eq!(v["home_server"], "localhost");
    let ops = User {
        user_id: "@ops:localhost".into(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    };
    let (st, v) = s
        .get(
            &ops,
            &format!("/_synapse/admin/v1/users/{}/admin", enc(&ops.user_id)),
        )
        .await;
    assert_eq!(
        (st, v),
        (StatusCode::OK, json!({ "admin": true })),
        "an admin who can use the admin API"
    );
    let (_, v): (StatusCode, Value) = s
        .get(
            &ops,
            &format!("/_matrix/client/v3/profile/{}", enc(&ops.user_id)),
        )
        .await;
    assert_eq!(v["displayname"], "Ops");
    let n = nonce(&s).await;
    let (st, v) = s
        .call(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body(&n, mac("s3cret", &n, "ops", "correct horse 1", true))),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_USER_IN_USE"))
    );
    s.stop().await;
}

async fn nonce(s: &TestServer) -> String {
    let (st, v) = s
        .call(Method::GET, "/_synapse/admin/v1/register", None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["nonce"].as_str().unwrap().to_owned()
}

/// None of Synapse's per-user experimental features exists here: all off, none can be turned on.
async fn experimental_features_all_off(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let bob = s.register("bob").await;
    let path = format!(
        "/_synapse/admin/v1/experimental_features/{}",
        enc(&bob.user_id)
    );
    let (st, v) = s.get(&admin, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({ "features": { "msc3881": false, "msc3575": false, "msc4222": false } })
    );
    let (st, v) = s
        .put(&admin, &path, json!({ "features": { "msc3881": false } }))
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    let (st, v) = s
        .put(&admin, &path, json!({ "features": { "msc3881": true } }))
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, _) = s
        .put(&admin, &path, json!({ "features": { "nonsense": false } }))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .get(
            &admin,
            "/_synapse/admin/v1/experimental_features/@ghost:localhost",
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}
