use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{password, with, Backend, TestServer};

crate::both_backends!(
    concurrent_registrations_read_their_writes,
    register_login_whoami_logout,
    wrong_password_and_uia,
    refresh_tokens,
    password_change_and_deactivate,
    devices,
    registration_modes,
    login_rate_limit,
    profile_propagates
);

async fn register_login_whoami_logout(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let (st, v) = s.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["user_id"], "@alice:localhost");
    assert_eq!(v["device_id"], alice.device_id.as_str());

    // Taken and invalid usernames.
    let (st, v) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "alice", "password": "x1", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_USER_IN_USE"))
    );
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/v3/register", None, Some(json!({"username": "bad name!", "password": "x1", "auth": {"type": "m.login.dummy"}})))
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_USERNAME"))
    );
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/register/available?username=alice",
            None,
            None,
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_USER_IN_USE"))
    );
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/register/available?username=zoe",
            None,
            None,
        )
        .await;
    assert_eq!((st, v["available"].as_bool()), (StatusCode::OK, Some(true)));

    // Login by localpart and by full id, on the r0 alias too.
    for (path, user) in [
        ("/_matrix/client/v3/login", "alice"),
        ("/_matrix/client/r0/login", "@alice:localhost"),
    ] {
        let (st, v) = s
            .call(
                Method::POST,
                path,
                None,
                Some(password(user, "correct horse 1")),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["user_id"], "@alice:localhost");
    }
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/v3/login", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["flows"][0]["type"], "m.login.password");

    // Logout invalidates the token.
    let (st, _) = s.post(&alice, "/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );

    // Tokens are stored hashed, never in clear.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM access_tokens")
        .fetch_all(&s.services().db.pool)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    assert!(stored
        .iter()
        .all(|(h,)| h.len() == 64 && !h.starts_with("pat_")));
    s.stop().await;
}

async fn wrong_password_and_uia(b: Backend) {
    let s = TestServer::start(b).await;
    s.register("alice").await;
    let (st, v) = s.login(password("alice", "wrong")).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, v) = s.login(password("nobody", "wrong")).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    // Registration without auth gets the UIA flows, then completes with the session.
    let (st, v) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "bob", "password": "pw1"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.dummy");
    let session = v["session"].as_str().unwrap().to_owned();
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/v3/register", None, Some(json!({"username": "bob", "password": "pw1", "auth": {"type": "m.login.dummy", "session": session}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // inhibit_login gives no token.
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/v3/register", None, Some(json!({"username": "carol", "password": "pw1", "inhibit_login": true, "auth": {"type": "m.login.dummy"}})))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v.get("access_token").is_none());
    assert_eq!(v["user_id"], "@carol:localhost");
    s.stop().await;
}

async fn refresh_tokens(b: Backend) {
    let s = TestServer::start_with(b, |c| c.refreshable_access_token_lifetime_ms = 60_000).await;
    s.register("alice").await;
    let (st, v) = s
        .login(with(
            password("alice", "correct horse 1"),
            json!({"refresh_token": true}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["expires_in_ms"], 60_000);
    let old_access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
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
            .0
        }
    };
    let do_refresh = |r: String| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/_matrix/client/v3/refresh",
                None,
                Some(json!({"refresh_token": r})),
            )
            .await
        }
    };
    // A lost response: the same refresh token may be used again until a successor is used.
    let (st, lost) = do_refresh(refresh.clone()).await;
    assert_eq!(st, StatusCode::OK, "{lost}");
    let (st, v) = do_refresh(refresh.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_access = v["access_token"].as_str().unwrap().to_owned();
    let new_refresh = v["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, old_access);
    assert_eq!(
        whoami(old_access.clone()).await,
        StatusCode::OK,
        "old token valid until a successor is used"
    );
    // First use of the new access token retires everything before it.
    assert_eq!(whoami(new_access.clone()).await, StatusCode::OK);
    assert_eq!(whoami(old_access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        whoami(lost["access_token"].as_str().unwrap().to_owned()).await,
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = do_refresh(refresh).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    // The new refresh token rotates on.
    let (st, v) = do_refresh(new_refresh).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

async fn password_change_and_deactivate(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let (st, v) = s.login(password("alice", "correct horse 1")).await;
    assert_eq!(st, StatusCode::OK);
    let other_token = v["access_token"].as_str().unwrap().to_owned();
    // UIA: first a challenge, then the password stage.
    let (st, v) = s
        .post(
            &alice,
            "/_matrix/client/v3/account/password",
            json!({"new_password": "new pass 2"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.password");
    let bad = json!({"new_password": "new pass 2", "auth": password("alice", "nope")});
    let (st, v) = s
        .post(&alice, "/_matrix/client/v3/account/password", bad)
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_FORBIDDEN"))
    );
    let good = json!({"new_password": "new pass 2", "auth": password("alice", "correct horse 1")});
    let (st, v) = s
        .post(&alice, "/_matrix/client/v3/account/password", good)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Other sessions are logged out, this one stays.
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&other_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK);
    // Old password refused, new accepted.
    let login = |pw: &str| password("alice", pw);
    let (st, _) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(login("correct horse 1")),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(login("new pass 2")),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Deactivation leaves rooms and kills every session.
    let room = s.create_room(&alice, json!({})).await;
    let auth = json!({"auth": password("alice", "new pass 2")});
    let (st, v) = s
        .post(&alice, "/_matrix/client/v3/account/deactivate", auth)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(login("new pass 2")),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let m = s
        .services()
        .db
        .membership("@alice:localhost", &room)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.membership, "leave");
    s.stop().await;
}

async fn devices(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let (st, v) = s
        .login(with(
            password("alice", "correct horse 1"),
            json!({"device_id": "PHONE", "initial_device_display_name": "My phone"}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let old_phone_token = v["access_token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&old_phone_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Logging in again on the same device replaces its token: the old one stops working.
    let (st, v) = s
        .login(with(
            password("alice", "correct horse 1"),
            json!({"device_id": "PHONE"}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let phone_token = v["access_token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&old_phone_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s.get(&alice, "/_matrix/client/v3/devices").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["devices"].as_array().unwrap().len(), 2);
    let (st, v) = s.get(&alice, "/_matrix/client/v3/devices/PHONE").await;
    assert_eq!(
        (st, v["display_name"].as_str()),
        (StatusCode::OK, Some("My phone"))
    );
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/devices/PHONE",
            json!({"display_name": "Old phone"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&alice, "/_matrix/client/v3/devices/PHONE").await;
    assert_eq!(v["display_name"], "Old phone");
    let (st, _) = s.get(&alice, "/_matrix/client/v3/devices/NOPE").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Deleting needs UIA.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/_matrix/client/v3/devices/PHONE",
            Some(&alice.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let auth = json!({"auth": password("alice", "correct horse 1"), "devices": ["PHONE"]});
    let (st, v) = s
        .post(&alice, "/_matrix/client/v3/delete_devices", auth)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&phone_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, v) = s.get(&alice, "/_matrix/client/v3/devices").await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn registration_modes(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.registration = palabre::config::RegistrationMode::Closed
    })
    .await;
    let (st, v) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "x", "password": "pw", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    s.stop().await;

    let s = TestServer::start_with(b, |c| {
        c.registration = palabre::config::RegistrationMode::Token;
        c.registration_tokens = vec!["letmein".into()];
    })
    .await;
    let (st, v) = s
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "x", "password": "pw"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.registration_token");
    let (st, _) = s
        .call(Method::POST, "/_matrix/client/v3/register", None, Some(json!({"username": "x", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "wrong"}})))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/v3/register", None, Some(json!({"username": "x", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "letmein"}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v1/register/m.login.registration_token/validity?token=letmein",
            None,
            None,
        )
        .await;
    assert_eq!((st, v["valid"].as_bool()), (StatusCode::OK, Some(true)));
    s.stop().await;
}

async fn login_rate_limit(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.rate_limits.login = palabre::config::RateLimit {
            per_second: 0.1,
            burst: 3.0,
        }
    })
    .await;
    s.register("alice").await;
    let body = password("alice", "wrong");
    let mut limited = None;
    for _ in 0..5 {
        let (st, v) = s
            .call(
                Method::POST,
                "/_matrix/client/v3/login",
                None,
                Some(body.clone()),
            )
            .await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(v);
            break;
        }
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let v = limited.expect("the fourth login attempt is rate-limited");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0);
    s.stop().await;
}

async fn profile_propagates(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (st, _) = s
        .put(
            &alice,
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            json!({"displayname": "Alice A."}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/profile/@alice:localhost",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(
        (st, v["displayname"].as_str()),
        (StatusCode::OK, Some("Alice A."))
    );
    let bob = s.register("bob").await;
    let (st, _) = s
        .put(
            &bob,
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            json!({"displayname": "hacked"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/@alice:localhost",
        crate::common::enc(&room)
    );
    crate::common::eventually(|| {
        let (s, path, alice) = (&s, &path, &alice);
        async move { s.get(alice, path).await.1["displayname"] == "Alice A." }
    })
    .await;
    s.stop().await;
}

/// Each new account is usable at once, whatever the other registrations in flight (a read on a
/// pooled connection must never see a snapshot older than the write it follows).
async fn concurrent_registrations_read_their_writes(b: Backend) {
    let s = TestServer::start(b).await;
    let names: Vec<String> = (0..24).map(|i| format!("user{i}")).collect();
    let users = futures::future::join_all(names.iter().map(|n| s.register(n))).await;
    let checks = futures::future::join_all(
        users
            .iter()
            .map(|u| s.get(u, "/_matrix/client/v3/account/whoami")),
    )
    .await;
    for (u, (st, v)) in users.iter().zip(checks) {
        assert_eq!(st, StatusCode::OK, "{}: {v}", u.user_id);
        assert_eq!(v["user_id"], u.user_id.as_str());
    }
    s.stop().await;
}
