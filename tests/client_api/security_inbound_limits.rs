//! Rate limits that hold behind a reverse proxy (security review, issue 14, item 11):
//! `[proxy] trusted_proxies` and `X-Forwarded-For`, the per-account failed-password budget
//! (login and the UIA password stage), the registration limit before anything else.
//! The test client connects from 127.0.0.1; servers that play "behind a proxy" trust it.

use palabre::config::{Config, RateLimit, RegistrationMode};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

const PW: &str = "correct horse 1";
const LOGIN: &str = "/_matrix/client/v3/login";

/// A bucket of `burst` tokens that does not refill during a test.
fn tight(burst: f64) -> RateLimit {
    RateLimit {
        per_second: 0.000_1,
        burst,
    }
}

fn behind_proxy(c: &mut Config) {
    c.proxy.trusted_proxies = vec!["127.0.0.1/32".into()];
}

/// A request as if forwarded for `xff` (None: no header).
async fn call_from(
    s: &TestServer,
    xff: Option<&str>,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.base));
    if let Some(x) = xff {
        req = req.header("X-Forwarded-For", x);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let st = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn login_from(
    s: &TestServer,
    xff: Option<&str>,
    user: &str,
    pw: &str,
) -> (StatusCode, Value) {
    call_from(s, xff, Method::POST, LOGIN, None, Some(password(user, pw))).await
}

fn assert_limited(st: StatusCode, v: &Value, what: &str) {
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{what}: {v}");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED", "{what}: {v}");
    assert!(
        v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{what}: {v}"
    );
}

/// Behind a trusted proxy each forwarded client has its own login bucket, and prepending
/// addresses to the header does not buy a new one.
async fn forwarded_clients_have_own_buckets(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        behind_proxy(c);
        c.rate_limits.login = tight(2.0);
    })
    .await;
    s.register("alice").await;
    for _ in 0..2 {
        let (st, v) = login_from(&s, Some("198.51.100.1"), "alice", PW).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = login_from(&s, Some("198.51.100.1"), "alice", PW).await;
    assert_limited(st, &v, "third login from one client");
    // The client forges a hop on the left: the proxy's right-most entry still names it.
    let (st, v) = login_from(&s, Some("192.0.2.77, 198.51.100.1"), "alice", PW).await;
    assert_limited(st, &v, "forged left-hand hop");
    // Another client behind the same proxy is not locked out.
    let (st, v) = login_from(&s, Some("198.51.100.2"), "alice", PW).await;
    assert_eq!(st, StatusCode::OK, "another client shares the bucket: {v}");
    s.stop().await;
}

/// From a peer that is not a trusted proxy, `X-Forwarded-For` is ignored: one bucket for the
/// connection's address whatever the header says.
async fn untrusted_forwarded_for_ignored(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.proxy.trusted_proxies = vec!["10.9.9.9".into()];
        c.rate_limits.login = tight(2.0);
    })
    .await;
    s.register("alice").await;
    for ip in ["198.51.100.1", "198.51.100.2"] {
        let (st, v) = login_from(&s, Some(ip), "alice", PW).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = login_from(&s, Some("198.51.100.3"), "alice", PW).await;
    assert_limited(st, &v, "a header from an untrusted peer bought a bucket");
    s.stop().await;
}

/// Failed passwords count per account whatever the address: after the budget, that account
/// gets 429 (even with the right password) while another account still logs in.
async fn failed_logins_limited_per_account(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        behind_proxy(c);
        c.rate_limits.login_failures = tight(3.0);
    })
    .await;
    s.register("alice").await;
    s.register("bob").await;
    let mut answers = vec![];
    for i in 0..10 {
        let ip = format!("198.51.100.{}", i + 1);
        let (st, v) = login_from(&s, Some(&ip), "alice", "wrong password").await;
        answers.push((st, v));
    }
    for (st, v) in &answers[..3] {
        assert_eq!(*st, StatusCode::FORBIDDEN, "{v}");
    }
    for (st, v) in &answers[3..] {
        assert_limited(*st, v, "guesses from many addresses");
    }
    // The same account by another spelling of its id: the same budget.
    let (st, v) = login_from(&s, Some("203.0.113.5"), &format!("@alice:{}", s.name()), PW).await;
    assert_limited(st, &v, "right password while locked");
    // An unknown account is limited the same way (no difference to tell accounts apart).
    for _ in 0..3 {
        let (st, v) = login_from(&s, Some("203.0.113.6"), "nobody", "x").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    let (st, v) = login_from(&s, Some("203.0.113.6"), "nobody", "x").await;
    assert_limited(st, &v, "unknown account");
    // Bob is not affected.
    let (st, v) = login_from(&s, Some("198.51.100.1"), "bob", PW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

/// The UIA password stage spends the same per-account budget as /login.
async fn uia_password_stage_limited(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        behind_proxy(c);
        c.rate_limits.login_failures = tight(3.0);
    })
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let wrong = json!({ "devices": ["NOPE"], "auth": password(&alice.user_id, "wrong") });
    for _ in 0..3 {
        let (st, v) = s
            .post(&alice, "/_matrix/client/v3/delete_devices", wrong.clone())
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(v["errcode"], "M_FORBIDDEN", "{v}");
    }
    for (path, body) in [
        ("/_matrix/client/v3/delete_devices", wrong.clone()),
        (
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "another horse 2", "auth": password(&alice.user_id, "wrong") }),
        ),
        (
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": password(&alice.user_id, PW) }),
        ),
    ] {
        let (st, v) = s.post(&alice, path, body).await;
        assert_limited(st, &v, path);
    }
    // /login shares the budget, and the account was not deactivated.
    let (st, v) = login_from(&s, Some("198.51.100.9"), "alice", PW).await;
    assert_limited(st, &v, "login after UIA failures");
    let (st, v) = s.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Another account's UIA still works.
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/delete_devices",
            json!({ "devices": ["NOPE"], "auth": password(&bob.user_id, PW) }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

/// The registration limit is counted before the availability check and before UIA: neither
/// `M_USER_IN_USE` nor registration-token guesses are free.
async fn registration_limited_before_checks(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        behind_proxy(c);
        c.registration = RegistrationMode::Token;
        c.registration_tokens = vec!["sesame-open".into()];
        c.rate_limits.registration = tight(2.0);
    })
    .await;
    s.services()
        .accounts()
        .create_user_cli("alice", PW, false)
        .await
        .unwrap();
    let reg = "/_matrix/client/v3/register";
    let available = "/_matrix/client/v3/register/available?username=alice";

    // /register/available.
    for _ in 0..2 {
        let (st, v) = call_from(&s, Some("198.51.100.1"), Method::GET, available, None, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errcode"], "M_USER_IN_USE", "{v}");
    }
    let (st, v) = call_from(&s, Some("198.51.100.1"), Method::GET, available, None, None).await;
    assert_limited(st, &v, "/register/available");

    // /register naming a taken user id.
    let taken = json!({ "username": "alice", "password": PW });
    for _ in 0..2 {
        let (st, v) = call_from(
            &s,
            Some("198.51.100.2"),
            Method::POST,
            reg,
            None,
            Some(taken.clone()),
        )
        .await;
        assert_eq!(v["errcode"], "M_USER_IN_USE", "{st} {v}");
    }
    let (st, v) = call_from(
        &s,
        Some("198.51.100.2"),
        Method::POST,
        reg,
        None,
        Some(taken),
    )
    .await;
    assert_limited(st, &v, "/register enumeration");

    // Registration-token guesses.
    let guess = |t: &str| {
        json!({ "username": "newbie", "password": PW,
                "auth": { "type": "m.login.registration_token", "token": t } })
    };
    for t in ["guess-1", "guess-2"] {
        let (st, v) = call_from(
            &s,
            Some("198.51.100.3"),
            Method::POST,
            reg,
            None,
            Some(guess(t)),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (st, v) = call_from(
        &s,
        Some("198.51.100.3"),
        Method::POST,
        reg,
        None,
        Some(guess("sesame-open")),
    )
    .await;
    assert_limited(st, &v, "token guesses");
    // Another client registers with the right token.
    let (st, v) = call_from(
        &s,
        Some("198.51.100.4"),
        Method::POST,
        reg,
        None,
        Some(guess("sesame-open")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

/// `internal-info` answers unsigned requests from loopback only when no proxy forwarded them:
/// a trusted proxy on loopback does not make its clients "loopback".
async fn internal_info_not_loopback_via_proxy(b: Backend) {
    let internal = "/_matrix/identity/api/v1/internal-info?medium=email&address=x%40example.org";
    let tchap = |c: &mut Config| {
        c.tchap = Some(Default::default());
    };
    let s = TestServer::start_with(b, tchap).await;
    let (st, v) = call_from(&s, None, Method::GET, internal, None, None).await;
    assert_eq!(st, StatusCode::OK, "loopback without a proxy: {v}");
    s.stop().await;
    let s = TestServer::start_with(b, |c| {
        tchap(c);
        behind_proxy(c);
    })
    .await;
    for xff in [None, Some("127.0.0.1"), Some("198.51.100.1")] {
        let (st, v) = call_from(&s, xff, Method::GET, internal, None, None).await;
        assert_eq!(
            st,
            StatusCode::FORBIDDEN,
            "through the proxy ({xff:?}): {v}"
        );
    }
    s.stop().await;
}

crate::both_backends!(
    forwarded_clients_have_own_buckets,
    untrusted_forwarded_for_ignored,
    failed_logins_limited_per_account,
    uia_password_stage_limited,
    registration_limited_before_checks,
    internal_info_not_loopback_via_proxy
);

/// The documented example configuration (with its `[proxy]` section) loads and checks, and a
/// bad range is refused at start.
#[test]
fn example_config_and_bad_ranges() {
    let cfg: Config = toml::from_str(include_str!("../../config/palabre.example.toml"))
        .expect("example config parses");
    palabre::services::check_config(&cfg).expect("example config checks");
    let mut bad = cfg.clone();
    bad.proxy.trusted_proxies = vec!["10.0.0.0/33".into()];
    assert!(palabre::services::check_config(&bad).is_err());
}
