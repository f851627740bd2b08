//! Tokens and flags a client hands back (security review, issue 14, item 17): the admin flag is
//! read at each admin request (not cached with the access token), UIA session ids are
//! length-limited, and pagination tokens at the ends of the i64 range never wrap or panic
//! (the tests run a debug build, where an overflow panics).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

const NOTICE: &str = "/_synapse/admin/v1/send_server_notice";

async fn login(s: &TestServer, name: &str, pw: &str) -> User {
    let (st, v) = s.login(password(name, pw)).await;
    assert_eq!(st, StatusCode::OK, "login {name}: {v}");
    User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    }
}

/// A demoted admin loses the admin API at once with the token he already holds; a promoted
/// user gains it at once.
async fn admin_flag_takes_effect_at_once(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.server_notices = Some(Default::default());
    })
    .await;
    let svc = s.services();
    svc.accounts()
        .create_user_cli("root", "correct horse 1", true)
        .await
        .unwrap();
    let root = login(&s, "root", "correct horse 1").await;
    let bob = s.register("bob").await;
    let notice =
        |n: &str| json!({ "user_id": bob.user_id, "content": { "msgtype": "m.text", "body": n } });
    let (st, v) = s.post(&root, NOTICE, notice("one")).await;
    assert_eq!(st, StatusCode::OK, "admin sends a notice: {v}");

    // Demoted (as another process or an operator would, in the database).
    svc.db.set_admin(&root.user_id, false).await.unwrap();
    let (st, v) = s.post(&root, NOTICE, notice("two")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "demoted admin still in: {v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");

    // Promoted: bob (whose token was cached as a non-admin's) gets in at once.
    let (st, _) = s.post(&bob, NOTICE, notice("three")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    svc.db.set_admin(&bob.user_id, true).await.unwrap();
    let carol = s.register("carol").await;
    let (st, v) = s
        .post(
            &bob,
            NOTICE,
            json!({ "user_id": carol.user_id, "content": { "msgtype": "m.text", "body": "hi" } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "promoted user kept out: {v}");
    s.stop().await;
}

/// A UIA session id longer than 255 bytes is 400 M_INVALID_PARAM wherever UIA is accepted.
async fn uia_session_length_limited(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let long = "s".repeat(256);
    let auth = with(
        password(&alice.user_id, "correct horse 1"),
        json!({ "session": long }),
    );
    let calls: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            json!({ "devices": ["NOPE"], "auth": auth }),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "another horse 2", "auth": auth }),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/keys/device_signing/upload",
            json!({ "auth": auth }),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": auth }),
        ),
        (
            Method::POST,
            "/_matrix/client/v3/register",
            json!({ "username": "newbie", "password": "correct horse 1",
                    "auth": { "type": "m.login.dummy", "session": long } }),
        ),
    ];
    for (m, path, body) in calls {
        let (st, v) = s.call(m, path, Some(&alice.token), Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{path}: {v}");
    }
    // Nothing happened: alice's account and password still work.
    login(&s, "alice", "correct horse 1").await;
    s.stop().await;
}

/// Every client pagination token near i64::MAX or i64::MIN: an answer (200 or 4xx), never a
/// 500 or a dropped connection (a panic).
async fn extreme_pagination_tokens(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let (st, _) = s
        .put(
            &alice,
            &format!("/_matrix/client/v3/directory/list/room/{}", enc(&room)),
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let ev = s.send_text(&alice, &room, "t1", "searchable words").await;
    let (max, min) = (i64::MAX, i64::MIN);
    let r = enc(&room);
    let e = enc(&ev);
    let sync_max = format!("s{max}_{max}_{max}_{max}_{max}_{max}_{max}");
    let mut gets: Vec<String> = vec![
        format!("/_matrix/client/v3/sync?timeout=0&since={sync_max}"),
        format!("/_matrix/client/v3/sync?timeout=0&since=s{max}_{max}"),
        format!("/_matrix/client/v3/keys/changes?from={sync_max}&to=s0_0"),
        format!("/_matrix/client/v3/keys/changes?from=s0_0&to={sync_max}"),
        format!("/_matrix/client/v3/rooms/{r}/members?at=t{max}"),
        format!("/_matrix/client/v3/rooms/{r}/members?at=t{min}"),
        format!("/_matrix/client/v3/rooms/{r}/context/{e}?limit={max}"),
        format!("/_matrix/client/v3/rooms/{r}/context/{e}?limit={min}"),
        format!("/_matrix/client/v3/publicRooms?since=p{max}"),
        format!("/_matrix/client/v3/publicRooms?since=p{max}&limit={max}"),
        format!("/_matrix/client/v3/publicRooms?since=p{}&limit=1", max - 1),
        format!("/_matrix/client/v3/publicRooms?limit={max}"),
        format!("/_matrix/client/v1/rooms/{r}/hierarchy?limit={max}&max_depth={max}"),
        format!("/_matrix/client/v1/rooms/{r}/hierarchy?from=p{max}"),
        format!("/_matrix/client/v1/rooms/{r}/threads?from=t{max}&limit={max}"),
        format!("/_matrix/client/v1/rooms/{r}/threads?from=t{min}&limit={min}"),
        format!("/_matrix/client/v3/notifications?from={max}&limit={max}"),
        format!("/_matrix/client/v3/notifications?from={min}&limit={min}"),
    ];
    for dir in ["b", "f"] {
        for from in [
            format!("t{max}"),
            format!("t{min}"),
            format!("t{}", min + 1),
            sync_max.clone(),
        ] {
            for extra in [
                String::new(),
                format!("&limit={max}"),
                format!("&limit={min}"),
                format!("&to=t{max}"),
                format!("&to=t{min}"),
            ] {
                gets.push(format!(
                    "/_matrix/client/v3/rooms/{r}/messages?dir={dir}&from={}{extra}",
                    enc(&from)
                ));
            }
            gets.push(format!(
                "/_matrix/client/v1/rooms/{r}/relations/{e}?dir={dir}&from={}&limit={max}",
                enc(&from.replacen('t', "r", 1))
            ));
            gets.push(format!(
                "/_matrix/client/v1/rooms/{r}/relations/{e}?dir={dir}&from=r0&to={}",
                enc(&from.replacen('t', "r", 1))
            ));
        }
        gets.push(format!(
            "/_matrix/client/v3/rooms/{r}/messages?dir={dir}&limit={max}"
        ));
    }
    let mut failed = vec![];
    for path in &gets {
        match s
            .try_call(Method::GET, path, Some(&alice.token), None)
            .await
        {
            None => failed.push(format!("GET {path}: no answer (the server panicked?)")),
            Some((st, v)) if st.is_server_error() => failed.push(format!("GET {path}: {st} {v}")),
            Some(_) => {}
        }
    }

    let mut posts: Vec<(String, Value)> = vec![];
    for next in [
        format!("k{max}_{max}"),
        format!("k{min}_{max}"),
        format!("k{max}_{}", max - 1),
        format!("k0_{max}"),
        format!("r{max}"),
        format!("r{min}"),
    ] {
        for order in ["rank", "recent"] {
            posts.push((
                format!("/_matrix/client/v3/search?next_batch={}", enc(&next)),
                json!({ "search_categories": { "room_events": {
                    "search_term": "searchable", "order_by": order,
                    "filter": { "limit": max } } } }),
            ));
        }
    }
    posts.push((
        "/_matrix/client/v3/publicRooms".into(),
        json!({ "since": format!("p{max}"), "limit": max }),
    ));
    posts.push((
        "/_matrix/client/v3/publicRooms".into(),
        json!({ "since": format!("p{}", max - 1), "limit": 2 }),
    ));
    posts.push((
        "/_matrix/client/v3/user_directory/search".into(),
        json!({ "search_term": "alice", "limit": max }),
    ));
    for (path, body) in &posts {
        match s
            .try_call(Method::POST, path, Some(&alice.token), Some(body.clone()))
            .await
        {
            None => failed.push(format!(
                "POST {path} {body}: no answer (the server panicked?)"
            )),
            Some((st, v)) if st.is_server_error() => {
                failed.push(format!("POST {path} {body}: {st} {v}"))
            }
            Some(_) => {}
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    s.stop().await;
}

crate::both_backends!(
    admin_flag_takes_effect_at_once,
    uia_session_length_limited,
    extreme_pagination_tokens
);
