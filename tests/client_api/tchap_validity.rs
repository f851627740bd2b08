//! Account validity (TCHAP.md §5): expiry enforcement, renewal by email link, the admin
//! endpoint, the background job (reminders once per offset, deactivation past the grace
//! period, its lease and its state across restarts); server notices (§7).

use palabre::config::{AccountValidityConfig, Config, ServerNoticesConfig, TchapConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;
use crate::smtp_sink::{link_in, SmtpSink};

const PW: &str = "Correct-Horse-42!";
const DAY: i64 = 24 * 3600 * 1000;
const ADMIN_VALIDITY: &str = "/_synapse/admin/v1/account_validity/validity";
const NOTICE: &str = "/_synapse/admin/v1/send_server_notice";

fn validity(c: &mut Config, sink: &SmtpSink) {
    sink.configure(&mut c.email);
    c.tchap = Some(TchapConfig {
        account_validity: Some(AccountValidityConfig {
            period_days: 30,
            reminder_days: vec![7, 1],
            grace_days: 10,
            job_interval_secs: 3600,
        }),
        ..Default::default()
    });
}

/// A local user made from the command line and logged in.
async fn user(srv: &TestServer, name: &str, admin: bool) -> User {
    srv.services()
        .accounts()
        .create_user_cli(name, PW, admin)
        .await
        .expect("user created");
    let (st, v) = srv.login(password(name, PW)).await;
    assert_eq!(st, StatusCode::OK, "login {name}: {v}");
    User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    }
}

async fn bind_email(srv: &TestServer, u: &User, address: &str) {
    let db = &srv.services().db;
    let now = palabre::util::now_ms();
    let mut tx = db.begin_write().await.unwrap();
    assert!(
        palabre::store::Db::bind_threepid(&mut tx.tx, "email", address, &u.user_id, now, now)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

/// A renewal link's path and query, on this test server (the configured base URL is not).
fn local(srv: &TestServer, link: &str) -> String {
    let at = link.find("/_synapse/").expect("renewal path in link");
    format!("{}{}", srv.base, &link[at..])
}

async fn html(srv: &TestServer, url: &str) -> (StatusCode, String) {
    let resp = srv.http.get(url).send().await.unwrap();
    let st = resp.status();
    (st, resp.text().await.unwrap())
}

fn assert_expired(st: StatusCode, v: &Value, what: &str) {
    assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {v}");
    assert_eq!(v["errcode"], "ORG_MATRIX_EXPIRED_ACCOUNT", "{what}: {v}");
    assert_eq!(v["error"], "User account has expired", "{what}: {v}");
}

async fn set_validity(srv: &TestServer, admin: &User, body: Value) -> (StatusCode, Value) {
    srv.post(admin, ADMIN_VALIDITY, body).await
}

async fn expiry_blocks_and_renews(backend: Backend) {
    let sink = SmtpSink::start().await;
    let srv = TestServer::start_with(backend, |c| validity(c, &sink)).await;
    let admin = user(&srv, "boss", true).await;
    let alice = user(&srv, "alice", false).await;
    bind_email(&srv, &alice, "alice@example.test").await;
    let name = srv.name();

    // The admin endpoint is for admins only.
    let (st, v) = set_validity(
        &srv,
        &alice,
        json!({"user_id": alice.user_id, "expiration_ts": 1}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    // Bad input: unknown user, remote user, bad JSON.
    let (st, _) = set_validity(&srv, &admin, json!({"user_id": format!("@nobody:{name}")})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = set_validity(&srv, &admin, json!({"user_id": "@x:elsewhere.test"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = set_validity(&srv, &admin, json!({"user_id": 12})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_BAD_JSON");
    // Server notices are off on this server.
    let (st, v) = srv
        .post(
            &admin,
            NOTICE,
            json!({"user_id": alice.user_id, "content": {"body": "x"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Without expiration_ts: now + period.
    let before = palabre::util::now_ms();
    let (st, v) = set_validity(&srv, &admin, json!({"user_id": alice.user_id})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let e = v["expiration_ts"].as_i64().unwrap();
    assert!(
        e >= before + 30 * DAY && e <= palabre::util::now_ms() + 30 * DAY,
        "{v}"
    );
    let (st, _) = srv.get(&alice, "/_matrix/client/v3/sync?timeout=0").await;
    assert_eq!(st, StatusCode::OK);

    // Expired.
    let past = palabre::util::now_ms() - 1000;
    let (st, v) = set_validity(
        &srv,
        &admin,
        json!({"user_id": alice.user_id, "expiration_ts": past}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expiration_ts"], past);
    let (st, v) = srv.get(&alice, "/_matrix/client/v3/sync?timeout=0").await;
    assert_expired(st, &v, "sync");
    let (st, v) = srv
        .get(
            &alice,
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
        )
        .await;
    assert_expired(st, &v, "profile");
    let (st, v) = srv
        .post(&alice, "/_matrix/client/v3/createRoom", json!({}))
        .await;
    assert_expired(st, &v, "createRoom");
    let (st, v) = srv.get(&alice, "/_matrix/client/v1/media/config").await;
    assert_expired(st, &v, "media config");
    let (st, v) = srv
        .call(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            Some(json!({})),
        )
        .await;
    assert_expired(st, &v, "media upload");
    let (st, v) = set_validity(&srv, &alice, json!({"user_id": alice.user_id})).await;
    assert_expired(st, &v, "admin API");
    // Other users are not affected; /versions needs no token.
    let (st, _) = srv.get(&admin, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = srv
        .call(Method::GET, "/_matrix/client/versions", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);

    // send_mail works while expired, on both paths; each mail has a new link.
    let (st, v) = srv
        .post(
            &alice,
            "/_matrix/client/unstable/account_validity/send_mail",
            json!({}),
        )
        .await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({})));
    let first = sink.wait_for("alice@example.test", 0).await;
    assert!(first.body.contains("expired on"), "{}", first.body);
    let (st, v) = srv
        .post(
            &alice,
            "/_synapse/client/email_account_validity/send_mail",
            json!({}),
        )
        .await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({})));
    let second = sink.wait_for("alice@example.test", 1).await;
    let link1 = link_in(&first.body).expect("renewal link");
    let link2 = link_in(&second.body).expect("renewal link");
    assert!(
        link1.contains("/_synapse/client/email_account_validity/renew?token="),
        "{link1}"
    );
    assert_ne!(link1, link2);

    // Unknown and missing tokens.
    let renew = format!("{}/_synapse/client/email_account_validity/renew", srv.base);
    let (st, _) = html(&srv, &format!("{renew}?token=nope")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = html(&srv, &renew).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = srv.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_expired(st, &v, "whoami before renewal");

    // The link renews once; then it (and the older pending link) says "already renewed".
    let before = palabre::util::now_ms();
    let (st, page) = html(&srv, &local(&srv, &link1)).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Account renewed"), "{page}");
    let (st, v) = srv.get(&alice, "/_matrix/client/v3/sync?timeout=0").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let row = srv
        .services()
        .db
        .validity(&alice.user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.expiration_ts >= before + 30 * DAY, "{row:?}");
    for l in [&link1, &link2] {
        let (st, page) = html(&srv, &local(&srv, l)).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert!(page.contains("already renewed"), "{page}");
    }
    let after = srv
        .services()
        .db
        .validity(&alice.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.expiration_ts, row.expiration_ts,
        "a used link renews no further"
    );

    // Logout stays possible once expired.
    let (st, _) = set_validity(
        &srv,
        &admin,
        json!({"user_id": alice.user_id, "expiration_ts": 5}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = srv
        .post(&alice, "/_matrix/client/v3/logout", json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = srv.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    srv.stop().await;
}

async fn count(sink: &SmtpSink, addr: &str) -> usize {
    sink.mails_to(addr).len()
}

async fn job_reminders_grace_and_lease(backend: Backend) {
    let sink = SmtpSink::start().await;
    let srv = TestServer::start_with(backend, |c| validity(c, &sink)).await;
    let admin = user(&srv, "boss", true).await;
    let now = palabre::util::now_ms();
    // (name, expires in, renewal emails)
    let plan = [
        ("bob", 5 * DAY, true),    // the 7-day reminder is due
        ("carol", DAY / 2, true),  // the 1-day reminder is due
        ("dave", -11 * DAY, true), // past the grace period
        ("erin", 20 * DAY, true),  // nothing yet
        ("frank", 5 * DAY, false), // reminders off
        ("gina", -DAY, true),      // expired, within the grace period
    ];
    let mut users = vec![];
    for (name, left, emails) in plan {
        let u = user(&srv, name, false).await;
        bind_email(&srv, &u, &format!("{name}@example.test")).await;
        let (st, v) = set_validity(
            &srv,
            &admin,
            json!({"user_id": u.user_id, "expiration_ts": now + left, "enable_renewal_emails": emails}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        users.push(u);
    }
    // An account from before expiry was switched on (no validity row).
    let old = user(&srv, "oldtimer", false).await;
    sqlx::query("DELETE FROM account_validity WHERE user_id = $1")
        .bind(&old.user_id)
        .execute(&srv.services().db.pool)
        .await
        .unwrap();

    let r = srv
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    assert!(r.ran);
    assert_eq!(r.backfilled, 1, "{r:?}");
    assert_eq!(r.reminders, 2, "{r:?}");
    assert_eq!(r.expired, 2, "dave and gina: {r:?}");
    assert_eq!(r.deactivated, 1, "{r:?}");
    let bob_mail = sink.wait_for("bob@example.test", 0).await;
    assert!(bob_mail.body.contains("expires on"), "{}", bob_mail.body);
    assert!(link_in(&bob_mail.body)
        .unwrap()
        .contains("/_synapse/client/email_account_validity/renew?token="));
    sink.wait_for("carol@example.test", 0).await;
    let backfilled = srv
        .services()
        .db
        .validity(&old.user_id)
        .await
        .unwrap()
        .expect("backfilled");
    // now + period, spread over the period's last tenth (3 days here).
    assert!(
        backfilled.expiration_ts >= now + 27 * DAY
            && backfilled.expiration_ts <= palabre::util::now_ms() + 30 * DAY,
        "{backfilled:?}"
    );
    // dave is deactivated: his password no longer logs in.
    let (st, v) = srv.login(password("dave", PW)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = srv
        .get(&users[2], "/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // gina is expired but still there.
    let (st, v) = srv
        .get(&users[5], "/_matrix/client/v3/account/whoami")
        .await;
    assert_expired(st, &v, "gina");

    // A second run sends nothing again.
    let r = srv
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    assert!(r.ran);
    assert_eq!((r.reminders, r.expired, r.deactivated), (0, 0, 0), "{r:?}");
    // Bob gets closer: the 1-day reminder (after the admin reset, once).
    let (st, _) = set_validity(
        &srv,
        &admin,
        json!({"user_id": users[0].user_id, "expiration_ts": now + DAY / 2}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r = srv
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    assert_eq!(r.reminders, 1, "{r:?}");
    sink.wait_for("bob@example.test", 1).await;
    let r = srv
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    assert_eq!(r.reminders, 0, "{r:?}");

    // A second process on the same database (PostgreSQL: SQLite serves one process): the
    // lease keeps the job on the first.
    if !matches!(backend, Backend::Postgres) {
        srv.stop().await;
        return;
    }
    let url = srv.services().config.database_url.clone().unwrap();
    let other = TestServer::start_with(backend, |c| {
        validity(c, &sink);
        c.database_url = Some(url.clone());
    })
    .await;
    let r = other
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    assert!(!r.ran, "the first process holds the lease");
    // The first stops (gives the lease back): the second takes over, from the database's
    // state alone — no reminder is sent twice. (Its data directory, which holds the SQLite
    // file, is kept until the end.)
    let mut srv = srv;
    srv.running.take().expect("running").stop().await;
    // The job is a singleton of the cluster: the second takes it at its next tick.
    let mut r = other
        .services()
        .policy()
        .run_validity_job_once()
        .await
        .unwrap();
    for _ in 0..50 {
        if r.ran {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = other
            .services()
            .policy()
            .run_validity_job_once()
            .await
            .unwrap();
    }
    assert!(r.ran);
    assert_eq!(
        (r.reminders, r.expired, r.deactivated, r.backfilled),
        (0, 0, 0, 0),
        "{r:?}"
    );
    for (addr, n) in [
        ("bob@example.test", 2),
        ("carol@example.test", 1),
        ("dave@example.test", 0),
        ("erin@example.test", 0),
        ("frank@example.test", 0),
        ("gina@example.test", 0),
    ] {
        assert_eq!(count(&sink, addr).await, n, "{addr}");
    }
    other.stop().await;
    drop(srv);
}

async fn job_runs_on_its_own(backend: Backend) {
    let sink = SmtpSink::start().await;
    let srv = TestServer::start_with(backend, |c| {
        validity(c, &sink);
        if let Some(v) = c.tchap.as_mut().and_then(|t| t.account_validity.as_mut()) {
            v.job_interval_secs = 1;
        }
    })
    .await;
    let admin = user(&srv, "boss", true).await;
    let hana = user(&srv, "hana", false).await;
    bind_email(&srv, &hana, "hana@example.test").await;
    let soon = palabre::util::now_ms() + 3 * DAY;
    let (st, v) = set_validity(
        &srv,
        &admin,
        json!({"user_id": hana.user_id, "expiration_ts": soon}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The server's own loop sends the 7-day reminder, once.
    let mail = sink.wait_for("hana@example.test", 0).await;
    assert!(mail.body.contains("expires on"), "{}", mail.body);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(sink.mails_to("hana@example.test").len(), 1);
    srv.stop().await;
}

async fn lease_function(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let db = &srv.services().db;
    let now = palabre::util::now_ms();
    assert!(db.take_lease("job", "a", now, 1000).await.unwrap());
    assert!(!db.take_lease("job", "b", now + 10, 1000).await.unwrap());
    assert!(
        db.take_lease("job", "a", now + 20, 1000).await.unwrap(),
        "the holder keeps it"
    );
    assert!(
        db.take_lease("job", "b", now + 2000, 1000).await.unwrap(),
        "expired: taken over"
    );
    assert!(!db.take_lease("job", "a", now + 2100, 1000).await.unwrap());
    db.release_lease("job", "a").await.unwrap();
    assert!(
        !db.take_lease("job", "a", now + 2200, 1000).await.unwrap(),
        "not a's to release"
    );
    db.release_lease("job", "b").await.unwrap();
    assert!(db.take_lease("job", "a", now + 2300, 1000).await.unwrap());
    srv.stop().await;
}

/// (sender, body) of a room's messages, newest first.
async fn messages(srv: &TestServer, u: &User, room: &str) -> Vec<(String, String)> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(room)
    );
    let (st, v) = srv.get(u, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap().to_owned(),
                e["content"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn server_notices(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.server_notices = Some(ServerNoticesConfig::default());
        c.encryption_by_default = palabre::config::EncryptionByDefault::All;
    })
    .await;
    let admin = user(&srv, "boss", true).await;
    let alice = user(&srv, "alice", false).await;
    let name = srv.name();
    let system = format!("@notices:{name}");
    let msg = |body: &str| json!({"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": body}});

    let (st, v) = srv.post(&alice, NOTICE, msg("nope")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let (st, _) = srv
        .post(
            &admin,
            NOTICE,
            json!({"user_id": format!("@ghost:{name}"), "content": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = srv
        .post(
            &admin,
            NOTICE,
            json!({"user_id": "@a:elsewhere.test", "content": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, v) = srv.post(&admin, NOTICE, msg("Hello 1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["event_id"].as_str().unwrap().starts_with('$'));
    let sync = srv.sync(&alice, None, 0).await;
    let invites = sync["rooms"]["invite"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(invites.len(), 1, "{sync}");
    let room = invites.keys().next().unwrap().clone();
    let inviter = invites[&room]["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id)
        .map(|e| e["sender"].clone());
    assert_eq!(inviter, Some(json!(system)), "{sync}");
    srv.join(&alice, &room).await;

    let (st, state) = srv
        .get(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let state = state.as_array().unwrap();
    assert!(
        !state.iter().any(|e| e["type"] == "m.room.encryption"),
        "unencrypted: {state:?}"
    );
    let of = |t: &str| state.iter().find(|e| e["type"] == t).unwrap()["content"].clone();
    assert_eq!(of("m.room.join_rules")["join_rule"], "invite");
    assert_eq!(of("m.room.name")["name"], "Server Notices");
    let (st, tags) = srv
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/tags",
                enc(&alice.user_id),
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(tags["tags"]["m.server_notice"].is_object(), "{tags}");

    assert_eq!(
        messages(&srv, &alice, &room).await,
        vec![(system.clone(), "Hello 1".to_owned())]
    );

    // A second notice (with a transaction id, retried) lands in the same room, once.
    let path = format!("{NOTICE}/txn1");
    let (st, v1) = srv.put(&admin, &path, msg("Hello 2")).await;
    assert_eq!(st, StatusCode::OK, "{v1}");
    let (st, v2) = srv.put(&admin, &path, msg("Hello 2")).await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert_eq!(v1["event_id"], v2["event_id"]);
    let bodies: Vec<String> = messages(&srv, &alice, &room)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, vec!["Hello 2".to_owned(), "Hello 1".to_owned()]);
    let (_, joined) = srv.get(&alice, "/_matrix/client/v3/joined_rooms").await;
    assert_eq!(joined["joined_rooms"], json!([room]));

    // After leaving, the next notice invites the user back to the same room.
    let (st, _) = srv
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = srv.post(&admin, NOTICE, msg("Hello 3")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sync = srv.sync(&alice, None, 0).await;
    assert!(sync["rooms"]["invite"][&room].is_object(), "{sync}");
    srv.join(&alice, &room).await;
    let bodies: Vec<String> = messages(&srv, &alice, &room)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies.first().map(String::as_str), Some("Hello 3"));

    // The system user cannot log in.
    let (st, _) = srv.login(password("notices", "")).await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::BAD_REQUEST,
        "{st}"
    );
    let (st, _) = srv.login(password("notices", PW)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    srv.stop().await;
}

/// On an externals server every user is an external, and a Tchap room without a rule is
/// `restricted` (no externals): the notices room is made `unrestricted` so they get it too.
async fn server_notices_for_externals(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.server_notices = Some(ServerNoticesConfig::default());
        c.tchap = Some(TchapConfig {
            externals_servers: vec!["localhost".into()],
            ..Default::default()
        });
    })
    .await;
    let admin = user(&srv, "boss", true).await;
    let partner = user(&srv, "partner", false).await;
    let body =
        json!({"user_id": partner.user_id, "content": {"msgtype": "m.text", "body": "Bienvenue"}});
    let (st, v) = srv.post(&admin, NOTICE, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sync = srv.sync(&partner, None, 0).await;
    let room = sync["rooms"]["invite"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_else(|| panic!("no notices invite: {sync}"));
    srv.join(&partner, &room).await;
    assert!(messages(&srv, &partner, &room)
        .await
        .iter()
        .any(|(_, body)| body == "Bienvenue"));
    srv.stop().await;
}

crate::both_backends!(
    server_notices_for_externals,
    expiry_blocks_and_renews,
    job_reminders_grace_and_lease,
    job_runs_on_its_own,
    lease_function,
    server_notices
);
