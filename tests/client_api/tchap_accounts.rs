//! Tchap accounts (TCHAP.md §2): email-only registration through a validation link or code,
//! the email → server gate, "address already in use", login and password reset by email,
//! bound addresses, the password policy.

use palabre::config::{Config, EmailRule, EmailTarget, TchapConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{Backend, TestServer, User};
use crate::smtp_sink::{code_in, link_in, SmtpSink};

crate::both_backends!(
    registration_by_link_and_code,
    denied_addresses_get_no_email,
    externals_server_needs_an_invite,
    address_in_use_is_not_revealed,
    login_and_password_reset_by_email,
    password_policy,
    add_and_delete_addresses,
    token_then_email_and_races,
    next_link_and_rate_limit,
);

const PW: &str = "Correct-Horse-1";

/// `.*@interieur.gouv.fr` → this server, `.*@finances.gouv.fr` → another one, everything else
/// → an externals server that needs an invitation.
fn tchap(c: &mut Config) {
    c.tchap = Some(TchapConfig {
        externals_servers: vec!["externes.example".into()],
        email_rules: vec![
            EmailRule {
                address: None,
                pattern: Some(r".*@interieur\.gouv\.fr".into()),
                server: c.server_name.clone(),
                requires_invite: false,
            },
            EmailRule {
                address: None,
                pattern: Some(r".*@finances\.gouv\.fr".into()),
                server: "finances.example".into(),
                requires_invite: false,
            },
        ],
        catch_all: Some(EmailTarget {
            server: "externes.example".into(),
            requires_invite: true,
        }),
        ..Default::default()
    });
}

async fn start(b: Backend, sink: &SmtpSink, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(b, |c| {
        sink.configure(&mut c.email);
        tweak(c);
    })
    .await
}

/// The path (and query) of an absolute URL the server produced.
fn path_of(url: &str) -> String {
    let i = url
        .find("/_matrix")
        .or_else(|| url.find("/_synapse"))
        .unwrap_or_else(|| panic!("no path in {url}"));
    url[i..].to_owned()
}

async fn request_token(
    srv: &TestServer,
    what: &str,
    email: &str,
    secret: &str,
    attempt: u64,
) -> (StatusCode, Value) {
    srv.call(
        Method::POST,
        &format!("/_matrix/client/v3/{what}/email/requestToken"),
        None,
        Some(json!({"client_secret": secret, "email": email, "send_attempt": attempt})),
    )
    .await
}

/// GETs a link of an email; returns the status and the page.
async fn open_link(srv: &TestServer, link: &str) -> (StatusCode, String) {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{}", srv.base, path_of(link)))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn register_with(srv: &TestServer, auth: Value, username: &str) -> (StatusCode, Value) {
    srv.call(
        Method::POST,
        "/_matrix/client/v3/register",
        None,
        Some(json!({"username": username, "password": PW, "auth": auth})),
    )
    .await
}

/// Registers `email` through the emailed link (or the code); the new user.
async fn register_email(srv: &TestServer, sink: &SmtpSink, email: &str, by_code: bool) -> User {
    let (st, v) = register_with(srv, Value::Null, "ignored").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["flows"], json!([{"stages": ["m.login.email.identity"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    let secret = format!("secret-{}", palabre::util::random_string(8));
    let before = sink.mails_to(email).len();
    let (st, tok) = request_token(srv, "register", email, &secret, 1).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let sid = tok["sid"].as_str().unwrap().to_owned();
    let mail = sink.wait_for(email, before).await;
    let creds = json!({"sid": sid, "client_secret": secret});
    let auth =
        json!({"type": "m.login.email.identity", "threepid_creds": creds, "session": session});
    // Not validated yet: the stage is refused, the session lives on.
    let (st, v) = register_with(srv, auth.clone(), "ignored").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["errcode"], "M_UNAUTHORIZED", "{v}");
    if by_code {
        let code = code_in(&mail.body, 6).expect("a code in the email");
        let submit = path_of(tok["submit_url"].as_str().unwrap());
        let (st, v) = srv
            .call(
                Method::POST,
                &submit,
                None,
                Some(json!({"sid": sid, "client_secret": secret, "token": "000000x"})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["errcode"], "M_THREEPID_AUTH_FAILED");
        let (st, v) = srv
            .call(
                Method::POST,
                &submit,
                None,
                Some(json!({"sid": sid, "client_secret": secret, "token": code})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    } else {
        let link = link_in(&mail.body).expect("a link in the email");
        let (st, page) = open_link(srv, &link).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert!(page.contains("validated"), "{page}");
    }
    let (st, v) = register_with(srv, auth.clone(), "ignored").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The session was single-use.
    let (st, _) = register_with(srv, auth, "ignored").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    }
}

async fn registration_by_link_and_code(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    let jean = register_email(&srv, &sink, "jean.dupont@interieur.gouv.fr", false).await;
    assert_eq!(jean.user_id, "@jean.dupont-interieur.gouv.fr:localhost");
    let (_, p) = srv
        .get(
            &jean,
            &format!("/_matrix/client/v3/profile/{}", jean.user_id),
        )
        .await;
    assert_eq!(p["displayname"], "Jean Dupont [Interieur]");
    let (st, v) = srv.get(&jean, "/_matrix/client/v3/account/3pid").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["threepids"][0]["address"],
        "jean.dupont@interieur.gouv.fr"
    );
    assert_eq!(v["threepids"][0]["medium"], "email");
    assert!(v["threepids"][0]["validated_at"].as_i64().unwrap() > 0);

    // Another address giving the same localpart gets a number; this one through the code.
    let other = register_email(&srv, &sink, "jean.du'pont@interieur.gouv.fr", true).await;
    assert_eq!(other.user_id, "@jean.dupont-interieur.gouv.fr1:localhost");

    // The same (client_secret, email, send_attempt) is the same session and no new email; a
    // higher attempt sends again, same sid.
    let addr = "paul.martin@interieur.gouv.fr";
    let (st, a) = request_token(&srv, "register", addr, "s1", 1).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    sink.wait_for(addr, 0).await;
    let (_, b1) = request_token(&srv, "register", addr, "s1", 1).await;
    assert_eq!(a["sid"], b1["sid"]);
    let (_, c) = request_token(&srv, "register", addr, "s1", 2).await;
    assert_eq!(a["sid"], c["sid"]);
    sink.wait_for(addr, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(sink.mails_to(addr).len(), 2);
    // A wrong link token fails without a 500.
    let (st, _) = open_link(
        &srv,
        &format!(
            "/_matrix/client/unstable/registration/email/submit_token?token=nope&client_secret=s1&sid={}",
            a["sid"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Bad inputs.
    let (st, v) = request_token(&srv, "register", addr, "bad secret!", 1).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, v) = request_token(&srv, "register", "not-an-address", "s2", 1).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    // The dummy stage does not register anybody with Tchap on.
    let (st, _) = register_with(&srv, json!({"type": "m.login.dummy"}), "someone").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

async fn denied_addresses_get_no_email(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    for addr in ["anne@finances.gouv.fr", "someone@example.com"] {
        let (st, v) = request_token(&srv, "register", addr, "sec", 1).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{addr}: {v}");
        assert_eq!(v["errcode"], "M_THREEPID_DENIED");
        let (st, v) = request_token(&srv, "account/3pid", addr, "sec", 1).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{addr}: {v}");
        assert_eq!(v["errcode"], "M_THREEPID_DENIED");
    }
    // A permitted address does get one; by then the denied ones would have arrived too.
    let (st, _) = request_token(&srv, "register", "ok@interieur.gouv.fr", "sec", 1).await;
    assert_eq!(st, StatusCode::OK);
    sink.wait_for("ok@interieur.gouv.fr", 0).await;
    assert_eq!(sink.mails().len(), 1, "{:?}", sink.mails());
    srv.stop().await;
}

async fn externals_server_needs_an_invite(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, |c| {
        c.tchap = Some(TchapConfig {
            externals_servers: vec![c.server_name.clone()],
            catch_all: Some(EmailTarget {
                server: c.server_name.clone(),
                requires_invite: true,
            }),
            ..Default::default()
        });
    })
    .await;
    let (st, v) = request_token(&srv, "register", "alice@example.com", "sec", 1).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_THREEPID_DENIED");
    srv.services()
        .db
        .insert_email_invite(&palabre::store::threepids::EmailInviteRow {
            token: "tok1".into(),
            origin: "interieur.example".into(),
            room_id: "!room:interieur.example".into(),
            address: "bob@example.com".into(),
            sender: "@jean:interieur.example".into(),
            created_ts: 1,
        })
        .await
        .unwrap();
    let bob = register_email(&srv, &sink, "Bob@Example.com", false).await;
    assert_eq!(bob.user_id, "@bob-example.com:localhost");
    assert!(sink.mails_to("alice@example.com").is_empty());
    srv.stop().await;
}

async fn address_in_use_is_not_revealed(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    let addr = "jean.dupont@interieur.gouv.fr";
    register_email(&srv, &sink, addr, false).await;
    let (st, v) = request_token(
        &srv,
        "register",
        "Jean.Dupont@interieur.gouv.fr",
        "again",
        1,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sid = v["sid"].as_str().unwrap().to_owned();
    let mail = sink.wait_for(addr, 1).await;
    assert!(mail.subject.contains("already"), "{}", mail.subject);
    assert!(link_in(&mail.body).is_none(), "{}", mail.body);
    assert!(code_in(&mail.body, 6).is_none(), "{}", mail.body);
    // That session can never validate.
    let submit = path_of(v["submit_url"].as_str().unwrap());
    let (st, _) = srv
        .call(
            Method::POST,
            &submit,
            None,
            Some(json!({"sid": sid, "client_secret": "again", "token": "123456"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Adding it to another account says so (that caller is authenticated).
    let paul = register_email(&srv, &sink, "paul@interieur.gouv.fr", true).await;
    let _ = paul;
    let (st, v) = request_token(&srv, "account/3pid", addr, "x", 1).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errcode"], "M_THREEPID_IN_USE");
    srv.stop().await;
}

fn email_login(address: &str, pw: &str) -> Value {
    json!({"type": "m.login.password",
           "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": address},
           "password": pw})
}

async fn login_and_password_reset_by_email(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    let addr = "jean.dupont@interieur.gouv.fr";
    let jean = register_email(&srv, &sink, addr, false).await;

    let (st, v) = srv
        .login(email_login("Jean.Dupont@Interieur.gouv.fr", PW))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], jean.user_id);
    let (st, v) = srv
        .login(
            json!({"type": "m.login.password", "medium": "email", "address": addr, "password": PW}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = srv.login(email_login(addr, "Wrong-Horse-1")).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (st, v) = srv.login(email_login("nobody@interieur.gouv.fr", PW)).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    // m.id.user still works.
    let (st, _) = srv
        .login(crate::common::password("jean.dupont-interieur.gouv.fr", PW))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Password reset.
    let (st, v) = request_token(&srv, "account/password", "nobody@interieur.gouv.fr", "r", 1).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_THREEPID_NOT_FOUND"))
    );
    let (st, v) = request_token(&srv, "account/password", addr, "reset", 1).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let creds = json!({"sid": v["sid"], "client_secret": "reset"});
    let mail = sink.wait_for(addr, 1).await;
    let link = link_in(&mail.body).unwrap();
    assert!(
        link.contains("/_synapse/client/password_reset/email/submit_token"),
        "{link}"
    );
    let reset = |pw: &str| {
        json!({"new_password": pw,
               "auth": {"type": "m.login.email.identity", "threepid_creds": creds.clone()}})
    };
    let new_pw = "Battery-Staple-2";
    // Without auth: the flow; before confirming the link: refused.
    let (st, v) = srv
        .call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            None,
            Some(json!({"new_password": new_pw})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.email.identity");
    // Opening the link only shows a confirmation form.
    let (st, page) = open_link(&srv, &link).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("<form"), "{page}");
    let (st, v) = srv
        .call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            None,
            Some(reset(new_pw)),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_THREEPID_AUTH_FAILED");
    // Confirm (the form posts back its hidden fields).
    let form: String = path_of(&link).split_once('?').unwrap().1.to_owned();
    let resp = srv
        .http
        .post(format!(
            "{}/_synapse/client/password_reset/email/submit_token",
            srv.base
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A weak new password is refused, the session survives it.
    let (st, v) = srv
        .call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            None,
            Some(reset("weak")),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_PASSWORD_TOO_SHORT"))
    );
    let (st, v) = srv
        .call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            None,
            Some(reset(new_pw)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Single use.
    let (st, _) = srv
        .call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            None,
            Some(reset("Other-Pass-33")),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Old password refused, new accepted, devices logged out.
    let (st, _) = srv.login(email_login(addr, PW)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = srv.login(email_login(addr, new_pw)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = srv.get(&jean, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

async fn password_policy(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    for v in ["r0", "v3"] {
        let (st, p) = srv
            .call(
                Method::GET,
                &format!("/_matrix/client/{v}/password_policy"),
                None,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            p,
            json!({"m.minimum_length": 12, "m.require_digit": true, "m.require_symbol": true,
                   "m.require_lowercase": true, "m.require_uppercase": true})
        );
    }
    let weak = [
        ("Sh0rt!", "M_PASSWORD_TOO_SHORT"),
        ("Long-Enough-Password", "M_PASSWORD_NO_DIGIT"),
        ("LongEnoughPassword1", "M_PASSWORD_NO_SYMBOL"),
        ("long-enough-password-1", "M_PASSWORD_NO_UPPERCASE"),
        ("LONG-ENOUGH-PASSWORD-1", "M_PASSWORD_NO_LOWERCASE"),
    ];
    for (pw, code) in weak {
        let (st, v) = srv
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(json!({"password": pw})),
            )
            .await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{pw}"
        );
    }
    let jean = register_email(&srv, &sink, "jean@interieur.gouv.fr", true).await;
    for (pw, code) in weak {
        let (st, v) = srv
            .post(
                &jean,
                "/_matrix/client/v3/account/password",
                json!({"new_password": pw, "auth": crate::common::password(&jean.user_id, PW)}),
            )
            .await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{pw}"
        );
    }
    srv.stop().await;

    // Tchap off: no policy, and no email registration without a relay.
    let plain = TestServer::start(b).await;
    let (st, p) = plain
        .call(
            Method::GET,
            "/_matrix/client/v3/password_policy",
            None,
            None,
        )
        .await;
    assert_eq!((st, p), (StatusCode::OK, json!({})));
    let (st, v) = request_token(&plain, "register", "a@b.fr", "sec", 1).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("M_THREEPID_MEDIUM_NOT_SUPPORTED")
        )
    );
    // Plain registration keeps working with short passwords.
    plain.register("alice").await;
    plain.stop().await;
}

async fn add_and_delete_addresses(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, tchap).await;
    let jean = register_email(&srv, &sink, "jean@interieur.gouv.fr", false).await;
    let second = "jean.bis@interieur.gouv.fr";
    let (st, tok) = request_token(&srv, "account/3pid", second, "add", 1).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let mail = sink.wait_for(second, 0).await;
    let body = json!({"sid": tok["sid"], "client_secret": "add"});
    // Not validated yet.
    let with_auth = crate::common::with(
        body.clone(),
        json!({"auth": crate::common::password(&jean.user_id, PW)}),
    );
    let (st, v) = srv
        .post(
            &jean,
            "/_matrix/client/v3/account/3pid/add",
            with_auth.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_THREEPID_AUTH_FAILED");
    let link = link_in(&mail.body).unwrap();
    assert!(link.contains("/add_threepid/email/submit_token"), "{link}");
    let (st, _) = open_link(&srv, &link).await;
    assert_eq!(st, StatusCode::OK);
    // UIA: the password stage first.
    let (st, v) = srv
        .post(&jean, "/_matrix/client/v3/account/3pid/add", body)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.password");
    let (st, v) = srv
        .post(&jean, "/_matrix/client/v3/account/3pid/add", with_auth)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = srv.get(&jean, "/_matrix/client/v3/account/3pid").await;
    let listed: Vec<&str> = v["threepids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["address"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{v}");
    assert!(listed.contains(&second));
    // Login with the new address.
    let (st, _) = srv.login(email_login(second, PW)).await;
    assert_eq!(st, StatusCode::OK);
    // Delete it.
    let (st, v) = srv
        .post(
            &jean,
            "/_matrix/client/v3/account/3pid/delete",
            json!({"medium": "email", "address": "Jean.Bis@interieur.gouv.fr"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id_server_unbind_result"], "no-support");
    let (_, v) = srv.get(&jean, "/_matrix/client/v3/account/3pid").await;
    assert_eq!(v["threepids"].as_array().unwrap().len(), 1, "{v}");
    let (st, _) = srv.login(email_login(second, PW)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, caps) = srv.get(&jean, "/_matrix/client/v3/capabilities").await;
    assert_eq!(caps["capabilities"]["m.3pid_changes"]["enabled"], true);
    // Deactivation frees the address: a new account can take it (with a new localpart).
    let (st, v) = srv
        .post(
            &jean,
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": crate::common::password(&jean.user_id, PW)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let again = register_email(&srv, &sink, "jean@interieur.gouv.fr", true).await;
    assert_eq!(again.user_id, "@jean-interieur.gouv.fr1:localhost");
    srv.stop().await;
}

/// A validated registration session for `email` (through the code): its creds.
async fn validated_session(srv: &TestServer, sink: &SmtpSink, email: &str) -> Value {
    let secret = format!("s-{}", palabre::util::random_string(8));
    let before = sink.mails_to(email).len();
    let (st, tok) = request_token(srv, "register", email, &secret, 1).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let mail = sink.wait_for(email, before).await;
    let code = code_in(&mail.body, 6).unwrap();
    let (st, v) = srv
        .call(
            Method::POST,
            &path_of(tok["submit_url"].as_str().unwrap()),
            None,
            Some(json!({"sid": tok["sid"], "client_secret": secret, "token": code})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    json!({"sid": tok["sid"], "client_secret": secret})
}

async fn token_then_email_and_races(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, |c| {
        tchap(c);
        c.registration = palabre::config::RegistrationMode::Token;
        c.registration_tokens = vec!["tok-1".into()];
    })
    .await;
    let (st, v) = register_with(&srv, Value::Null, "x").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["flows"],
        json!([{"stages": ["m.login.registration_token", "m.login.email.identity"]}])
    );
    let session = v["session"].as_str().unwrap().to_owned();
    // A wrong token fails the stage; the right one is remembered.
    let (st, v) = register_with(
        &srv,
        json!({"type": "m.login.registration_token", "token": "nope", "session": session}),
        "x",
    )
    .await;
    // Synapse's refusal of the stage: M_UNAUTHORIZED in the 401 challenge.
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED"))
    );
    let (st, v) = register_with(
        &srv,
        json!({"type": "m.login.registration_token", "token": "tok-1", "session": session}),
        "x",
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["completed"], json!(["m.login.registration_token"]));
    // The session holds a pending use of the token until it registers.
    let uses = || async {
        let t = srv
            .services()
            .db
            .registration_token("tok-1")
            .await
            .unwrap()
            .unwrap();
        (t.pending, t.completed)
    };
    assert_eq!(uses().await, (1, 0));
    // Two sessions validated for the same address: the first registration wins, the second is
    // refused and creates no account.
    let addr = "paul@interieur.gouv.fr";
    let first = validated_session(&srv, &sink, addr).await;
    let second = validated_session(&srv, &sink, addr).await;
    let (st, v) = register_with(
        &srv,
        json!({"type": "m.login.email.identity", "threepid_creds": first, "session": session}),
        "x",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], "@paul-interieur.gouv.fr:localhost");
    assert_eq!(uses().await, (0, 1));
    let paul_token = v["access_token"].as_str().unwrap().to_owned();
    let auth = |creds: &Value, session: &str| json!({"type": "m.login.email.identity", "threepid_creds": creds, "session": session});
    let (_, v) = register_with(&srv, Value::Null, "x").await;
    let session2 = v["session"].as_str().unwrap().to_owned();
    register_with(
        &srv,
        json!({"type": "m.login.registration_token", "token": "tok-1", "session": session2}),
        "x",
    )
    .await;
    let (st, v) = register_with(&srv, auth(&second, &session2), "x").await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_THREEPID_IN_USE")),
        "{v}"
    );
    // The refused registration keeps its session's pending use (for a retry).
    assert_eq!(uses().await, (1, 1));
    let (st, _) = srv
        .call(
            Method::GET,
            "/_matrix/client/v3/profile/@paul-interieur.gouv.fr1:localhost",
            Some(&paul_token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The email stage alone does not skip the token stage.
    let third = validated_session(&srv, &sink, "marie@interieur.gouv.fr").await;
    let (st, v) = register_with(&srv, auth(&third, "fresh-session"), "x").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["completed"], json!(["m.login.email.identity"]));
    srv.stop().await;
}

async fn next_link_and_rate_limit(b: Backend) {
    let sink = SmtpSink::start().await;
    let srv = start(b, &sink, |c| {
        tchap(c);
        c.rate_limits.registration = palabre::config::RateLimit {
            per_second: 0.001,
            burst: 3.0,
        };
    })
    .await;
    let addr = "jean@interieur.gouv.fr";
    let body = |next: &str| json!({"client_secret": "n", "email": addr, "send_attempt": 1, "next_link": next});
    let path = "/_matrix/client/v3/register/email/requestToken";
    let (st, v) = srv
        .call(Method::POST, path, None, Some(body("javascript:alert(1)")))
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, v) = srv
        .call(
            Method::POST,
            path,
            None,
            Some(body("https://app.example/done")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mail = sink.wait_for(addr, 0).await;
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}{}",
            srv.base,
            path_of(&link_in(&mail.body).unwrap())
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(resp.headers()["location"], "https://app.example/done");
    // Past the burst: M_LIMIT_EXCEEDED (the refused next_link did not count).
    let (st, _) = request_token(&srv, "register", addr, "m", 1).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = request_token(&srv, "register", addr, "o", 1).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = request_token(&srv, "register", addr, "p", 1).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED"))
    );
    srv.stop().await;
}
