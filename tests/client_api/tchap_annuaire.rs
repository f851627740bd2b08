//! The Tchap annuaire (TCHAP.md §6) and the identity endpoints (§1): three servers of one
//! federation — names[0] and names[1] host agents, names[2] externals — and, in the second
//! test, a fourth server outside the federation.

use palabre::{
    config::{AnnuaireConfig, Config, EmailRule, EmailTarget, RateLimit, TchapConfig},
    store::{threepids::EmailInviteRow, Db},
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    annuaire_search_and_replication,
    annuaire_externals_and_identity
);

const USER_SEARCH: &str = "/_matrix/client/v3/user_directory/search";
const PW: &str = "Correct-Horse-42!";

/// The federation's rules: `a.gouv.fr` on names[0], `interieur.gouv.fr` on names[1], everything
/// else on the externals server names[2] (by invitation). Peers only pull every hour: what
/// arrives sooner came by push.
pub(crate) fn tchap(names: &[String], c: &mut Config) {
    c.tchap = Some(TchapConfig {
        externals_servers: vec![names[2].clone()],
        email_rules: vec![
            EmailRule {
                address: None,
                pattern: Some(r".*@(.+\.)?a\.gouv\.fr".into()),
                server: names[0].clone(),
                requires_invite: false,
            },
            EmailRule {
                address: None,
                pattern: Some(r".*@(.+\.)?interieur\.gouv\.fr".into()),
                server: names[1].clone(),
                requires_invite: false,
            },
        ],
        catch_all: Some(EmailTarget {
            server: names[2].clone(),
            requires_invite: true,
        }),
        annuaire: AnnuaireConfig {
            pull_interval_secs: 3600,
        },
        ..Default::default()
    });
}

/// A user created on `s` with an email bound, its display name set through the profile API.
pub(crate) async fn user(
    s: &TestServer,
    localpart: &str,
    display: &str,
    email: Option<&str>,
) -> User {
    let svc = s.services();
    let uid = svc
        .accounts()
        .create_user_cli(localpart, PW, false)
        .await
        .expect("user created");
    if let Some(e) = email {
        bind(s, uid.as_str(), e).await;
    }
    let (st, v) = s.login(password(localpart, PW)).await;
    assert_eq!(st, StatusCode::OK, "login {localpart}: {v}");
    let u = User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    };
    let (st, v) = s
        .put(
            &u,
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&u.user_id)),
            json!({ "displayname": display }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    u
}

async fn bind(s: &TestServer, user_id: &str, address: &str) {
    let svc = s.services();
    let now = palabre::util::now_ms();
    let mut tx = svc.db.begin_write().await.unwrap();
    assert!(
        Db::bind_threepid(&mut tx.tx, "email", address, user_id, now, now)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

async fn search(s: &TestServer, u: &User, term: &str) -> Vec<String> {
    let (st, v) = s
        .post(u, USER_SEARCH, json!({ "search_term": term, "limit": 50 }))
        .await;
    assert_eq!(st, StatusCode::OK, "search {term}: {v}");
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn finds(s: &TestServer, u: &User, term: &str, who: &User) -> bool {
    search(s, u, term).await.contains(&who.user_id)
}

pub(crate) async fn hide(s: &TestServer, u: &User, hidden: bool) {
    let (st, v) = s
        .put(
            u,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/im.vector.hide_profile",
                enc(&u.user_id)
            ),
            json!({ "hide_profile": hidden }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn annuaire_search_and_replication(b: Backend) {
    let (servers, _cert) = servers_n(b, 3, |_, names, c| tchap(names, c)).await;
    let (a, bs) = (&servers[0], &servers[1]);
    let names: Vec<String> = servers.iter().map(|s| s.name()).collect();

    let alice = user(
        a,
        "alice",
        "Alice Martin [A]",
        Some("alice.martin@a.gouv.fr"),
    )
    .await;
    let carol = user(a, "carol", "Carole Lefèvre [A]", None).await;
    let helene = user(
        bs,
        "helene",
        "Hélène Dupont-Moreau [Interieur]",
        Some("helene.dupont@sg.interieur.gouv.fr"),
    )
    .await;
    let bob = user(bs, "bob", "Bob Durand [Interieur]", None).await;
    // An agent's entry with an address the rules give to another server (a moved account).
    bind(bs, &bob.user_id, "bob.durand@a.gouv.fr").await;
    bs.services()
        .policy()
        .annuaire_touch(&ruma::UserId::parse(&bob.user_id).unwrap())
        .await;

    // Local search at once, accents folded, prefixes, org and email sub-domain labels.
    assert_eq!(
        search(a, &alice, "carole").await,
        vec![carol.user_id.clone()]
    );
    assert!(finds(a, &alice, "LEFEV", &carol).await);
    // After replication (pushed: the periodic pull is an hour away).
    eventually(|| async { finds(a, &alice, "helene", &helene).await }).await;
    assert!(finds(a, &alice, "HÉL", &helene).await);
    assert!(finds(a, &alice, "moreau", &helene).await);
    assert!(finds(a, &alice, "dupont-mo", &helene).await);
    assert!(finds(a, &alice, "helene dup", &helene).await);
    assert!(finds(a, &alice, "sg", &helene).await);
    eventually(|| async { finds(a, &alice, "bob", &bob).await }).await;
    let org = search(a, &alice, "interieur").await;
    assert!(
        org.contains(&helene.user_id) && org.contains(&bob.user_id),
        "{org:?}"
    );
    assert!(!org.contains(&alice.user_id), "{org:?}");
    // Every word must match; the exact word ranks first.
    assert!(search(a, &alice, "helene bob").await.is_empty());
    assert!(search(a, &alice, "zzz").await.is_empty());
    let (_, v) = a
        .post(&alice, USER_SEARCH, json!({ "search_term": "helene" }))
        .await;
    assert_eq!(
        v["results"][0]["display_name"],
        "Hélène Dupont-Moreau [Interieur]"
    );
    assert_eq!(v["limited"], false);
    // And the other way: B's agents find A's.
    eventually(|| async { finds(bs, &bob, "alice mar", &alice).await }).await;

    // Which account an address belongs to travels with the annuaire.
    let owner = a
        .services()
        .policy()
        .account_for_email("Bob.Durand@a.gouv.fr")
        .await
        .unwrap();
    assert_eq!(owner.map(|u| u.to_string()), Some(bob.user_id.clone()));
    let (st, v) = a
        .call(
            Method::GET,
            "/_matrix/identity/api/v1/info?medium=email&address=bob.durand%40a.gouv.fr",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "hs": names[1], "new_hs": names[0] }));
    let (_, v) = a
        .call(
            Method::GET,
            "/_matrix/identity/api/v1/info?medium=email&address=helene.dupont%40sg.interieur.gouv.fr",
            None,
            None,
        )
        .await;
    assert_eq!(v, json!({ "hs": names[1] }));

    // The liste rouge: hidden at once on its server, then on the peer; unhiding brings back.
    eventually(|| async { finds(bs, &bob, "carole", &carol).await }).await;
    hide(a, &carol, true).await;
    assert!(!finds(a, &alice, "carole", &carol).await);
    eventually(|| async { !finds(bs, &bob, "carole", &carol).await }).await;
    hide(bs, &helene, true).await;
    assert!(!finds(bs, &bob, "helene", &helene).await);
    eventually(|| async { !finds(a, &alice, "helene", &helene).await }).await;
    hide(a, &carol, false).await;
    assert!(finds(a, &alice, "carole", &carol).await);
    eventually(|| async { finds(bs, &bob, "carole", &carol).await }).await;
    hide(bs, &helene, false).await;
    eventually(|| async { finds(a, &alice, "helene", &helene).await }).await;

    // A deactivated user vanishes everywhere.
    bs.services()
        .accounts()
        .deactivate(&ruma::UserId::parse(&bob.user_id).unwrap())
        .await
        .unwrap();
    eventually(|| async { !finds(a, &alice, "bob", &bob).await }).await;
    assert!(!finds(bs, &helene, "bob", &bob).await);
    assert!(finds(a, &alice, "helene", &helene).await);

    for s in servers {
        s.stop().await;
    }
}

async fn annuaire_externals_and_identity(b: Backend) {
    let (servers, _cert) = servers_n(b, 4, |i, names, c| {
        // names[3] is outside the federation (plain Matrix, not named by the rules).
        if i < 3 {
            tchap(&names[..3], c);
        }
        if i == 2 {
            c.rate_limits.search = RateLimit {
                per_second: 0.01,
                burst: 12.0,
            };
        }
    })
    .await;
    let (a, c) = (&servers[0], &servers[2]);
    let names: Vec<String> = servers.iter().map(|s| s.name()).collect();

    let alice = user(a, "alice", "Alice Agent [A]", Some("alice@a.gouv.fr")).await;
    let zoe = user(a, "zoe", "Zoé Agent [A]", Some("zoe@a.gouv.fr")).await;
    let eve = user(
        c,
        "eve",
        "Eve Externe [Partner]",
        Some("eve@partner.example"),
    )
    .await;
    let ext2 = user(c, "ext2", "Ext Deux [Partner]", None).await;

    // A room on A open to externals, alice and eve in it.
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "initial_state": [{
                "type": "im.vector.room.access_rules", "state_key": "",
                "content": { "rule": "unrestricted" } }] }),
        )
        .await;
    a.invite(&alice, &room, &eve).await;
    c.join(&eve, &room).await;

    // The externals server has the annuaire too (zoe's entry arrived)...
    eventually(|| async {
        c.services()
            .policy()
            .account_for_email("zoe@a.gouv.fr")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    // ...but an external only finds the people sharing a room with them.
    eventually(|| async { finds(c, &eve, "alice", &alice).await }).await;
    assert!(search(c, &eve, "zoe").await.is_empty());
    assert!(search(c, &eve, "agent").await == vec![alice.user_id.clone()]);
    assert!(search(c, &eve, "deux").await.is_empty());
    // An agent finds the annuaire and the external in their room, not other externals.
    eventually(|| async { finds(a, &alice, "eve", &eve).await }).await;
    assert!(finds(a, &alice, "zoe", &zoe).await);
    assert!(search(a, &alice, "deux").await.is_empty());
    assert!(search(a, &alice, "ext2").await.is_empty());
    // Rate-limited per user.
    let mut limited = false;
    for _ in 0..20 {
        let (st, v) = c
            .post(&eve, USER_SEARCH, json!({ "search_term": "alice" }))
            .await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
            limited = true;
            break;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert!(limited, "external's searches were never limited");
    let _ = ext2;

    // info: no auth, CORS, OPTIONS, missing parameters.
    let info = |addr: &str| {
        format!(
            "{}/_matrix/identity/api/v1/info?medium=email&address={}",
            a.base,
            enc(addr)
        )
    };
    let resp = a
        .http
        .get(info("someone@x.a.gouv.fr"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "hs": names[0] })
    );
    let resp = a
        .http
        .request(Method::OPTIONS, info("someone@a.gouv.fr"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let (_, v) = a
        .call(
            Method::GET,
            &info("x@partner.example")[a.base.len()..],
            None,
            None,
        )
        .await;
    assert_eq!(v, json!({ "hs": names[2] }));
    for path in [
        "/_matrix/identity/api/v1/info?medium=email",
        "/_matrix/identity/api/v1/info?address=x%40a.gouv.fr",
        "/_matrix/identity/api/v1/internal-info?medium=email",
    ] {
        let (st, v) = a.call(Method::GET, path, None, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["errcode"], "M_MISSING_PARAMS", "{path}");
    }
    let (st, v) = a
        .call(
            Method::GET,
            &info("not an address")[a.base.len()..],
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A plain Matrix server has no identity endpoints.
    let (st, _) = servers[3]
        .call(
            Method::GET,
            &info("x@a.gouv.fr")[a.base.len()..],
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // internal-info: the loopback interface (another server's process on this host)...
    let internal =
        "/_matrix/identity/api/v1/internal-info?medium=email&address=new%40partner.example";
    let (st, v) = a.call(Method::GET, internal, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({ "hs": names[2], "requires_invite": true, "invited": false })
    );
    a.services()
        .db
        .insert_email_invite(&EmailInviteRow {
            token: "tok1".into(),
            origin: names[0].clone(),
            room_id: room.clone(),
            address: "new@partner.example".into(),
            sender: alice.user_id.clone(),
            created_ts: palabre::util::now_ms(),
        })
        .await
        .unwrap();
    let (_, v) = a.call(Method::GET, internal, None, None).await;
    assert_eq!(v["invited"], true, "{v}");
    // ...but not a client a proxy forwarded,
    let resp = a
        .http
        .get(format!("{}{internal}", a.base))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // a signed request from a peer is accepted, one from outside the federation refused.
    let peer = ruma::ServerName::parse(&names[0]).unwrap();
    let v = servers[1]
        .services()
        .federation()
        .federation_request(&peer, Method::GET, internal, None)
        .await
        .expect("a peer may ask");
    assert_eq!(v["invited"], true);
    let e = servers[3]
        .services()
        .federation()
        .federation_request(&peer, Method::GET, internal, None)
        .await
        .expect_err("a stranger may not");
    assert_eq!(e.status, StatusCode::FORBIDDEN, "{}", e.message);
    // The change stream: peers only.
    let changes = "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/changes?since=0";
    let e = servers[3]
        .services()
        .federation()
        .federation_request(&peer, Method::GET, changes, None)
        .await
        .expect_err("a stranger may not pull");
    assert_eq!(e.status, StatusCode::FORBIDDEN);
    let v = servers[1]
        .services()
        .federation()
        .federation_request(&peer, Method::GET, changes, None)
        .await
        .unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert!(entries
        .iter()
        .any(|e| e["user_id"] == zoe.user_id && e["visible"] == true));
    assert_eq!(v["more"], false);
    let e = servers[3]
        .services()
        .federation()
        .federation_request(
            &peer,
            Method::PUT,
            "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/notify",
            Some(&json!({ "position": 1 })),
        )
        .await
        .expect_err("a stranger may not notify");
    assert_eq!(e.status, StatusCode::FORBIDDEN);

    for s in servers {
        s.stop().await;
    }
}

/// Two nodes of one server on one PostgreSQL: an agent created and renamed through node 1 is
/// found under the new name by a search on node 2 (its index follows node 1's writes).
#[tokio::test]
async fn annuaire_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Backend::Postgres, dir.path()).await;
    let names: Vec<String> = ["localhost", "interieur.example", "externes.example"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let node = |url: String, names: Vec<String>| async move {
        TestServer::start_with(Backend::Postgres, move |c| {
            tchap(&names, c);
            c.database_url = Some(url);
        })
        .await
    };
    let n1 = node(url.clone(), names.clone()).await;
    let n2 = node(url, names).await;
    let alice = user(&n1, "alice", "Alice Martin", Some("alice.martin@a.gouv.fr")).await;
    let bob = user(&n2, "bob", "Bob Durand", Some("bob.durand@a.gouv.fr")).await;
    eventually(|| finds(&n2, &bob, "Martin", &alice)).await;
    let (st, v) = n1
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            json!({ "displayname": "Alice Dupont" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    eventually(|| finds(&n2, &bob, "Dupont", &alice)).await;
    assert!(!finds(&n2, &bob, "Martin", &alice).await);
    n2.stop().await;
    n1.stop().await;
}
