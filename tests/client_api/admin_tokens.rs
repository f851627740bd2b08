//! Registration tokens through HTTP: the admin API as Synapse documents it (list, create,
//! show, change, delete, its refusals), the configured tokens seeded into it, and registration
//! spending them (limited uses, expiry, the validity endpoint, pending uses of sessions).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    non_admins_refused,
    crud_shapes,
    bad_bodies_refused,
    limited_token,
    expired_token,
    pending_uses,
);

const LIST: &str = "/_synapse/admin/v1/registration_tokens";
const NEW: &str = "/_synapse/admin/v1/registration_tokens/new";
const REGISTER: &str = "/_matrix/client/v3/register";

fn one(token: &str) -> String {
    format!("{LIST}/{token}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A server asking for a registration token, seeded with `seed` from the configuration.
async fn token_server(b: Backend, seed: &[&str]) -> TestServer {
    let seed: Vec<String> = seed.iter().map(|s| s.to_string()).collect();
    TestServer::start_with(b, |c| {
        c.registration = palabre::config::RegistrationMode::Token;
        c.registration_tokens = seed;
    })
    .await
}

/// Registers `name` with a registration token in one request (no UIA session yet).
async fn register_with_token(s: &TestServer, name: &str, token: &str) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        REGISTER,
        None,
        Some(json!({ "username": name, "password": "correct horse 1",
                     "auth": { "type": "m.login.registration_token", "token": token } })),
    )
    .await
}

async fn validity(s: &TestServer, token: &str) -> bool {
    let (st, v) = s
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"
            ),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["valid"].as_bool().expect("valid is a boolean")
}

/// The refusal of the token stage, as Synapse answers it: 401 with the flows and
/// `M_UNAUTHORIZED`.
fn assert_token_refused(st: StatusCode, v: &Value) {
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errcode"], "M_UNAUTHORIZED", "{v}");
    assert_eq!(
        v["flows"],
        json!([{ "stages": ["m.login.registration_token"] }]),
        "{v}"
    );
}

fn tokens_of(list: &Value) -> Vec<&str> {
    list["registration_tokens"]
        .as_array()
        .expect("registration_tokens")
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect()
}

/// 401 without an access token, 403 `M_FORBIDDEN` for a plain user, on every endpoint.
async fn non_admins_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let admin = s.admin_user("boss").await;
    let (st, _) = s.post(&admin, NEW, json!({ "token": "abc" })).await;
    assert_eq!(st, StatusCode::OK);
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, LIST.into(), None),
        (Method::GET, format!("{LIST}?valid=true"), None),
        (Method::POST, NEW.into(), Some(json!({}))),
        (Method::GET, one("abc"), None),
        (Method::PUT, one("abc"), Some(json!({ "uses_allowed": 1 }))),
        (Method::DELETE, one("abc"), None),
    ];
    for (m, path, body) in &endpoints {
        let (st, v) = s.call(m.clone(), path, None, body.clone()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {path}: {v}");
        let (st, v) = s
            .call(m.clone(), path, Some(&alice.token), body.clone())
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}: {v}");
        assert_eq!(v["errcode"], "M_FORBIDDEN", "{m} {path}: {v}");
    }
    // Nothing changed.
    let (st, v) = s.get(&admin, LIST).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v,
        json!({ "registration_tokens": [
            { "token": "abc", "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": null }
        ] })
    );
    s.stop().await;
}

async fn crud_shapes(b: Backend) {
    let s = token_server(b, &["seed-1", "seed-2"]).await;
    let admin = s.admin_user("boss").await;
    // The configured tokens are in the table, unlimited and without expiry.
    let (st, v) = s.get(&admin, LIST).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({ "registration_tokens": [
            { "token": "seed-1", "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": null },
            { "token": "seed-2", "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": null },
        ] })
    );

    // Generated: 16 characters by default, `length` otherwise.
    let (st, v) = s.post(&admin, NEW, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let generated = v["token"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 16, "{v}");
    assert!(generated
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)));
    assert_eq!(
        v,
        json!({ "token": generated, "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": null })
    );
    let (st, v) = s.post(&admin, NEW, json!({ "length": 64 })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["token"].as_str().unwrap().len(), 64);
    let long = v["token"].as_str().unwrap().to_owned();

    // Given, with limits.
    let expiry = now_ms() + 3_600_000;
    let (st, v) = s
        .post(
            &admin,
            NEW,
            json!({ "token": "Ab.9_~-x", "uses_allowed": 3, "expiry_time": expiry }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let abc = json!({ "token": "Ab.9_~-x", "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": expiry });
    assert_eq!(v, abc);
    let (st, v) = s.get(&admin, &one("Ab.9_~-x")).await;
    assert_eq!((st, &v), (StatusCode::OK, &abc));
    // An existing token is 400 M_INVALID_PARAM, as with Synapse; the seed too.
    for t in ["Ab.9_~-x", "seed-1"] {
        let (st, v) = s.post(&admin, NEW, json!({ "token": t })).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{v}");
    }

    // PUT: what is present changes (null clears), the rest stays.
    let (st, v) = s
        .put(&admin, &one("Ab.9_~-x"), json!({ "uses_allowed": null }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["uses_allowed"], &v["expiry_time"]),
        (&json!(null), &json!(expiry))
    );
    let (st, v) = s
        .put(
            &admin,
            &one("Ab.9_~-x"),
            json!({ "uses_allowed": 0, "expiry_time": null, "other": 1 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({ "token": "Ab.9_~-x", "uses_allowed": 0, "pending": 0, "completed": 0, "expiry_time": null })
    );
    let (st, v2) = s.put(&admin, &one("Ab.9_~-x"), json!({})).await;
    assert_eq!((st, &v2), (StatusCode::OK, &v));

    // `valid`: a token with no use allowed is not valid.
    let (_, v) = s.get(&admin, &format!("{LIST}?valid=false")).await;
    assert_eq!(tokens_of(&v), ["Ab.9_~-x"]);
    let (_, v) = s.get(&admin, &format!("{LIST}?valid=true")).await;
    let mut valid = vec![generated.as_str(), long.as_str(), "seed-1", "seed-2"];
    valid.sort();
    assert_eq!(tokens_of(&v), valid);
    let (st, v) = s.get(&admin, &format!("{LIST}?valid=maybe")).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );

    // A changed seed is never overwritten by the next start's seeding.
    let (st, _) = s
        .put(&admin, &one("seed-1"), json!({ "uses_allowed": 5 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let seeded = s
        .services()
        .db
        .seed_registration_tokens(&["seed-1".into(), "seed-3".into()])
        .await
        .unwrap();
    assert_eq!(seeded, ["seed-3"]);
    let (_, v) = s.get(&admin, &one("seed-1")).await;
    assert_eq!(v["uses_allowed"], 5, "{v}");

    // A token named `new`: POST /new creates, GET/PUT/DELETE /new address it.
    let (st, v) = s.get(&admin, NEW).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (st, _) = s.post(&admin, NEW, json!({ "token": "new" })).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.get(&admin, NEW).await;
    assert_eq!((st, v["token"].as_str()), (StatusCode::OK, Some("new")));
    let (st, v) = s.put(&admin, NEW, json!({ "uses_allowed": 2 })).await;
    assert_eq!((st, v["uses_allowed"].as_i64()), (StatusCode::OK, Some(2)));
    let (st, _) = s.call(Method::DELETE, NEW, Some(&admin.token), None).await;
    assert_eq!(st, StatusCode::OK);

    // DELETE, then the token is gone: 404 M_NOT_FOUND on each method.
    let (st, v) = s
        .call(Method::DELETE, &one("Ab.9_~-x"), Some(&admin.token), None)
        .await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({})));
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({ "uses_allowed": 1 }))),
        (Method::PUT, Some(json!({}))),
        (Method::DELETE, None),
    ] {
        for t in ["Ab.9_~-x", "never-made"] {
            let (st, v) = s
                .call(m.clone(), &one(t), Some(&admin.token), body.clone())
                .await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{m} {t}: {v}");
            assert_eq!(v["errcode"], "M_NOT_FOUND", "{m} {t}: {v}");
        }
    }
    let (_, v) = s.get(&admin, LIST).await;
    let mut left = vec![
        generated.as_str(),
        long.as_str(),
        "seed-1",
        "seed-2",
        "seed-3",
    ];
    left.sort();
    assert_eq!(tokens_of(&v), left);
    s.stop().await;
}

async fn bad_bodies_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let (st, _) = s.post(&admin, NEW, json!({ "token": "taken" })).await;
    assert_eq!(st, StatusCode::OK);
    let past = now_ms() - 1000;
    let bad_new = [
        json!({ "token": 123 }),
        json!({ "token": null }),
        json!({ "token": "" }),
        json!({ "token": "x".repeat(65) }),
        json!({ "token": "a b" }),
        json!({ "token": "a/b" }),
        json!({ "token": "é" }),
        json!({ "length": 0 }),
        json!({ "length": 65 }),
        json!({ "length": "16" }),
        json!({ "length": 1.5 }),
        json!({ "length": null }),
        json!({ "uses_allowed": -1 }),
        json!({ "uses_allowed": "1" }),
        json!({ "uses_allowed": true }),
        json!({ "uses_allowed": 1.0 }),
        json!({ "expiry_time": "soon" }),
        json!({ "expiry_time": past }),
        json!({ "expiry_time": 1.5 }),
    ];
    for body in &bad_new {
        let (st, v) = s.post(&admin, NEW, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{body}: {v}");
    }
    let bad_put = [
        json!({ "uses_allowed": -1 }),
        json!({ "uses_allowed": false }),
        json!({ "expiry_time": past }),
        json!({ "expiry_time": "x" }),
    ];
    for body in &bad_put {
        let (st, v) = s.put(&admin, &one("taken"), body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["errcode"], "M_INVALID_PARAM", "{body}: {v}");
    }
    // Not JSON, or not an object.
    let (st, v) = s.raw(Method::POST, NEW, Some(&admin.token), "{nope").await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_NOT_JSON"))
    );
    let (st, v) = s
        .raw(Method::PUT, &one("taken"), Some(&admin.token), "[1]")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // None of them made or changed a token.
    let (_, v) = s.get(&admin, LIST).await;
    assert_eq!(
        v,
        json!({ "registration_tokens": [
            { "token": "taken", "uses_allowed": null, "pending": 0, "completed": 0, "expiry_time": null }
        ] })
    );
    s.stop().await;
}

/// `uses_allowed: 1`: one registration, the next refused; the validity endpoint follows. Two
/// registrations racing for the last use: one wins.
async fn limited_token(b: Backend) {
    let s = token_server(b, &[]).await;
    let admin = s.admin_user("boss").await;
    let (st, _) = s
        .post(&admin, NEW, json!({ "token": "once", "uses_allowed": 1 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(validity(&s, "once").await);
    assert!(!validity(&s, "never-made").await);
    let (st, v) = register_with_token(&s, "first", "once").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], "@first:localhost");
    let (_, v) = s.get(&admin, &one("once")).await;
    assert_eq!(
        (v["pending"].as_i64(), v["completed"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    assert!(!validity(&s, "once").await);
    let (st, v) = register_with_token(&s, "second", "once").await;
    assert_token_refused(st, &v);
    let (st, v) = register_with_token(&s, "second", "never-made").await;
    assert_token_refused(st, &v);
    let (st, _) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/profile/@second:localhost",
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Listed as no longer valid; one more use allowed makes it valid again.
    let (_, v) = s.get(&admin, &format!("{LIST}?valid=false")).await;
    assert_eq!(tokens_of(&v), ["once"]);
    let (st, _) = s
        .put(&admin, &one("once"), json!({ "uses_allowed": 2 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(validity(&s, "once").await);
    let (st, v) = register_with_token(&s, "second", "once").await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The race: several registrations at once for one remaining use.
    let (st, _) = s
        .post(&admin, NEW, json!({ "token": "last", "uses_allowed": 1 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<String> = (0..4).map(|i| format!("racer{i}")).collect();
    let results =
        futures::future::join_all(names.iter().map(|n| register_with_token(&s, n, "last"))).await;
    let won = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert_eq!(won, 1, "{results:?}");
    for (st, v) in results.iter().filter(|(st, _)| *st != StatusCode::OK) {
        assert_token_refused(*st, v);
    }
    let (_, v) = s.get(&admin, &one("last")).await;
    assert_eq!(
        (v["pending"].as_i64(), v["completed"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    s.stop().await;
}

async fn expired_token(b: Backend) {
    let s = token_server(b, &[]).await;
    let admin = s.admin_user("boss").await;
    let (st, _) = s
        .post(
            &admin,
            NEW,
            json!({ "token": "brief", "expiry_time": now_ms() + 1500 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(validity(&s, "brief").await);
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    assert!(!validity(&s, "brief").await);
    let (st, v) = register_with_token(&s, "late", "brief").await;
    assert_token_refused(st, &v);
    let (_, v) = s.get(&admin, &format!("{LIST}?valid=false")).await;
    assert_eq!(tokens_of(&v), ["brief"]);
    let (_, v) = s.get(&admin, &format!("{LIST}?valid=true")).await;
    assert_eq!(tokens_of(&v), Vec::<&str>::new());
    // Without expiry it works again.
    let (st, _) = s
        .put(&admin, &one("brief"), json!({ "expiry_time": null }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = register_with_token(&s, "late", "brief").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Outside token mode the validity endpoint answers false.
    s.stop().await;
    let s = TestServer::start_with(b, |c| c.registration_tokens = vec!["seeded".into()]).await;
    assert!(!validity(&s, "seeded").await);
    s.stop().await;
}

/// A UIA session that passed the token stage holds a use until it registers or expires; a
/// token whose last use is held is refused to other sessions.
async fn pending_uses(b: Backend) {
    let s = token_server(b, &[]).await;
    let admin = s.admin_user("boss").await;
    let (st, _) = s
        .post(&admin, NEW, json!({ "token": "one", "uses_allowed": 1 }))
        .await;
    assert_eq!(st, StatusCode::OK);
    // A session in flight (as after the token stage of a multi-stage flow) holds the use.
    let db = &s.services().db;
    assert!(db
        .reserve_registration_token(
            "held-session",
            "{\"m.login.registration_token\":\"one\"}",
            "one",
            now_ms()
        )
        .await
        .unwrap());
    let (_, v) = s.get(&admin, &one("one")).await;
    assert_eq!(
        (v["pending"].as_i64(), v["completed"].as_i64()),
        (Some(1), Some(0)),
        "{v}"
    );
    assert!(!validity(&s, "one").await);
    let (st, v) = register_with_token(&s, "other", "one").await;
    assert_token_refused(st, &v);
    // The session expires (an hour later, seen by the next UIA write): the use comes back.
    db.uia_put("later", None, "{}", now_ms() + 3_700_000)
        .await
        .unwrap();
    let (_, v) = s.get(&admin, &one("one")).await;
    assert_eq!(v["pending"], 0, "{v}");
    assert!(validity(&s, "one").await);

    // Through HTTP: the stage answers with the session; repeating it with the same token takes
    // no second use, with another token is refused.
    let (st, v) = s
        .call(
            Method::POST,
            REGISTER,
            None,
            Some(json!({ "username": "carol", "password": "correct horse 1" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let session = v["session"].as_str().unwrap().to_owned();
    let body = |token: &str| {
        json!({ "username": "carol", "password": "correct horse 1",
                "auth": { "type": "m.login.registration_token", "token": token, "session": session } })
    };
    let (st, v) = s
        .call(Method::POST, REGISTER, None, Some(body("one")))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(&admin, &one("one")).await;
    assert_eq!(
        (v["pending"].as_i64(), v["completed"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    // The session was consumed: replaying it registers nobody.
    let (st, v) = s
        .call(
            Method::POST,
            REGISTER,
            None,
            Some(json!({ "username": "dave", "password": "correct horse 1",
                         "auth": { "type": "m.login.registration_token", "token": "one", "session": session } })),
        )
        .await;
    assert_token_refused(st, &v);
    // A missing token is M_MISSING_PARAM in the challenge.
    let (st, v) = s
        .call(
            Method::POST,
            REGISTER,
            None,
            Some(json!({ "username": "dave", "password": "correct horse 1",
                         "auth": { "type": "m.login.registration_token" } })),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_MISSING_PARAM")),
        "{v}"
    );
    s.stop().await;
}
