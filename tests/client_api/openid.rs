//! OpenID: `POST /user/{id}/openid/request_token` and the federation `openid/userinfo`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

crate::both_backends!(openid_tokens);

async fn userinfo(s: &TestServer, token: &str) -> (StatusCode, serde_json::Value) {
    s.call(
        Method::GET,
        &format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            enc(token)
        ),
        None,
        None,
    )
    .await
}

async fn openid_tokens(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let path = |u: &User| {
        format!(
            "/_matrix/client/v3/user/{}/openid/request_token",
            enc(&u.user_id)
        )
    };

    let (st, v) = s.post(&alice, &path(&alice), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["matrix_server_name"], "localhost");
    assert_eq!(v["expires_in"], 3600);
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32);

    // The third party learns who the token belongs to, without any other credential.
    let (st, v) = userinfo(&s, &token).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "sub": alice.user_id }));
    // Not an access token for the client API, and access tokens are not OpenID tokens.
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = userinfo(&s, &alice.token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_UNKNOWN_TOKEN");

    // Only the hash is stored.
    let db = &s.services().db;
    let now = palabre::util::now_ms();
    assert_eq!(
        db.openid_token_user(&palabre::util::hash_secret(&token), now)
            .await
            .unwrap()
            .as_deref(),
        Some(alice.user_id.as_str())
    );
    assert_eq!(db.openid_token_user(&token, now).await.unwrap(), None);

    // Unknown, missing and expired tokens.
    let (st, v) = userinfo(&s, "made-up").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_UNKNOWN_TOKEN");
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/federation/v1/openid/userinfo",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_MISSING_TOKEN");
    let old = "expired-token";
    db.insert_openid_token(
        &palabre::util::hash_secret(old),
        &bob.user_id,
        now - 1,
        now - 3_600_001,
    )
    .await
    .unwrap();
    let (st, v) = userinfo(&s, old).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errcode"], "M_UNKNOWN_TOKEN");

    // Only for oneself.
    let (st, v) = s.post(&alice, &path(&bob), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let (st, _) = s
        .call(Method::POST, &path(&alice), None, Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A deactivated account's tokens stop working.
    let (_, v) = s.post(&bob, &path(&bob), json!({})).await;
    let bobs = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&s, &bobs).await.0, StatusCode::OK);
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password(&bob.user_id, "correct horse 1")}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(userinfo(&s, &bobs).await.0, StatusCode::UNAUTHORIZED);
    s.stop().await;
}
