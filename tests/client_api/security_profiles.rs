//! Security review mends, profiles under Tchap (TCHAP.md §6): an external sees only the
//! profiles of the users he shares a room with; an agent on the liste rouge only to those who
//! share a room with him; the same over federation `query/profile` per asking server. Three
//! servers: names[0] and names[1] host agents, names[2] externals (`tchap_annuaire::tchap`).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    common::*,
    tchap_annuaire::{hide, tchap, user},
};

/// The three profile paths of `target` as `u` sees them on `s`: (status, errcode) each, and
/// the display name when answered.
async fn profile(s: &TestServer, u: &User, target: &str) -> (StatusCode, Value) {
    let base = format!("/_matrix/client/v3/profile/{}", enc(target));
    let (st, v) = s.get(u, &base).await;
    for field in ["displayname", "avatar_url"] {
        let (fst, fv) = s.get(u, &format!("{base}/{field}")).await;
        if st == StatusCode::FORBIDDEN {
            assert_eq!(
                (fst, fv["errcode"].as_str()),
                (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
                "{field} of {target} as {}: {fv}",
                u.user_id
            );
        } else {
            assert_ne!(fst, StatusCode::FORBIDDEN, "{field} of {target}: {fv}");
        }
    }
    (st, v)
}

async fn sees(s: &TestServer, u: &User, target: &User, display: &str) {
    let (st, v) = profile(s, u, &target.user_id).await;
    assert_eq!(
        (st, v["displayname"].as_str()),
        (StatusCode::OK, Some(display)),
        "{} should see {}: {v}",
        u.user_id,
        target.user_id
    );
}

async fn refused(s: &TestServer, u: &User, target: &str) {
    let (st, v) = profile(s, u, target).await;
    assert_eq!(
        (st, v["errcode"].as_str(), v["error"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("M_FORBIDDEN"),
            Some("Profile isn't available")
        ),
        "{} should not see {target}",
        u.user_id
    );
}

/// `query/profile` of `target` asked of `dest` by `from`, signed: (status, body).
async fn fed_profile(from: &TestServer, dest: &TestServer, target: &str) -> (StatusCode, Value) {
    fed_query(from, dest, &format!("user_id={}", enc(target))).await
}

async fn fed_query(from: &TestServer, dest: &TestServer, query: &str) -> (StatusCode, Value) {
    let resp = from
        .services()
        .federation()
        .federation_send(
            &ruma::ServerName::parse(dest.name()).unwrap(),
            Method::GET,
            &format!("/_matrix/federation/v1/query/profile?{query}"),
            None,
        )
        .await
        .expect("request sent");
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

async fn tchap_profiles(b: Backend) {
    let (servers, _cert) = servers_n(b, 3, |_, names, c| tchap(names, c)).await;
    let (a, bs, c) = (&servers[0], &servers[1], &servers[2]);
    let alice = user(a, "alice", "Alice [A]", Some("alice@a.gouv.fr")).await;
    let zoe = user(a, "zoe", "Zoe [A]", Some("zoe@a.gouv.fr")).await;
    let hana = user(a, "hana", "Hana [A]", Some("hana@a.gouv.fr")).await;
    let helene = user(bs, "helene", "Helene [Interieur]", None).await;
    let eve = user(c, "eve", "Eve [Partner]", Some("eve@partner.example")).await;
    let ext2 = user(c, "ext2", "Ext Deux [Partner]", None).await;
    hide(a, &hana, true).await;

    // eve shares a room with alice (on A, open to externals).
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

    // An external: the users he shares a room with, and himself; nobody else — not even
    // whether a user exists.
    sees(c, &eve, &alice, "Alice [A]").await;
    sees(c, &eve, &eve, "Eve [Partner]").await;
    refused(c, &eve, &zoe.user_id).await;
    refused(c, &eve, &helene.user_id).await;
    refused(c, &eve, &ext2.user_id).await;
    refused(c, &eve, &format!("@nobody:{}", c.name())).await;
    refused(c, &eve, &format!("@nobody:{}", a.name())).await;
    // Agents are not limited for profiles out of the liste rouge, externals' included.
    sees(a, &zoe, &alice, "Alice [A]").await;
    sees(a, &zoe, &eve, "Eve [Partner]").await;
    sees(bs, &helene, &zoe, "Zoe [A]").await;
    let (st, _) = profile(a, &zoe, &format!("@nobody:{}", a.name())).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an agent learns as before");

    // The liste rouge: hana is shown to herself and to those sharing a room with her (an
    // invite is enough), to nobody else.
    sees(a, &hana, &hana, "Hana [A]").await;
    refused(a, &zoe, &hana.user_id).await;
    refused(a, &alice, &hana.user_id).await;
    refused(c, &eve, &hana.user_id).await;
    let hroom = a.create_room(&hana, json!({})).await;
    a.invite(&hana, &hroom, &alice).await;
    sees(a, &alice, &hana, "Hana [A]").await;
    refused(a, &zoe, &hana.user_id).await;
    // Leaving the liste rouge shows her again.
    hide(a, &hana, false).await;
    sees(a, &zoe, &hana, "Hana [A]").await;
    hide(a, &hana, true).await;
    refused(a, &zoe, &hana.user_id).await;

    // Over federation, per asking server. B's agents share no room with hana: refused at A,
    // and B, which knows from the annuaire that she is hidden, refuses its own users too.
    let (st, v) = fed_profile(bs, a, &hana.user_id).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{v}"
    );
    eventually(|| async {
        bs.services()
            .db
            .annuaire_entries_of(std::slice::from_ref(&hana.user_id))
            .await
            .unwrap()
            .first()
            .is_some_and(|e| !e.visible)
    })
    .await;
    refused(bs, &helene, &hana.user_id).await;
    // Once helene is in a room with her, both answer. (B learns the room's members when
    // helene joins: an invite alone tells B nothing of them.)
    a.invite(&hana, &hroom, &helene).await;
    let (st, v) = fed_profile(bs, a, &hana.user_id).await;
    assert_eq!(
        (st, v["displayname"].as_str()),
        (StatusCode::OK, Some("Hana [A]")),
        "{v}"
    );
    bs.join(&helene, &hroom).await;
    eventually(|| async { profile(bs, &helene, &hana.user_id).await.0 == StatusCode::OK }).await;
    // Agent servers ask as before about users out of the liste rouge (unknown users: 404).
    let (st, v) = fed_profile(bs, a, &zoe.user_id).await;
    assert_eq!(
        (st, v["displayname"].as_str()),
        (StatusCode::OK, Some("Zoe [A]"))
    );
    let (st, _) = fed_profile(bs, a, &format!("@nobody:{}", a.name())).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The externals server: only about users one of its users shares a room with (the
    // check is A's, whatever C's own rule says), unknown users included.
    let (st, v) = fed_profile(c, a, &alice.user_id).await;
    assert_eq!(
        (st, v["displayname"].as_str()),
        (StatusCode::OK, Some("Alice [A]"))
    );
    for target in [
        zoe.user_id.clone(),
        hana.user_id.clone(),
        format!("@nobody:{}", a.name()),
    ] {
        let (st, v) = fed_profile(c, a, &target).await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{target}: {v}"
        );
    }
    let (st, v) = fed_query(
        c,
        a,
        &format!("user_id={}&field=displayname", enc(&zoe.user_id)),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // Once eve has left, alice is out of her sight too.
    let (st, _) = c
        .post(
            &eve,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    refused(c, &eve, &alice.user_id).await;
    eventually(|| async { fed_profile(c, a, &alice.user_id).await.0 == StatusCode::FORBIDDEN })
        .await;

    for s in servers {
        s.stop().await;
    }
}

/// Tchap off: `im.vector.hide_profile` is ordinary account data and profiles are public.
async fn plain_profiles(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (st, _) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            json!({ "displayname": "Alice" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    hide(&s, &alice, true).await;
    sees(&s, &bob, &alice, "Alice").await;
    s.stop().await;
}

crate::both_backends!(tchap_profiles, plain_profiles);
