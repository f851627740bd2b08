//! Extended profiles (spec v1.16, MSC4133): any key, set, read, deleted, within the limits,
//! shown to other users and over federation.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

crate::both_backends!(extended_profile_fields, extended_fields_over_federation);

async fn extended_profile_fields(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let field = |key: &str| {
        format!(
            "/_matrix/client/v3/profile/{}/{}",
            enc(&alice.user_id),
            enc(key)
        )
    };
    let (st, caps) = s.get(&alice, "/_matrix/client/v3/capabilities").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(caps["capabilities"]["m.profile_fields"]["enabled"], true);

    let (st, v) = s
        .put(&alice, &field("m.tz"), json!({"m.tz": "Europe/Paris"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let job = json!({"title": "Chargée de mission", "unit": ["DINUM", "Etalab"]});
    let (st, v) = s
        .put(&alice, &field("fr.gouv.job"), json!({"fr.gouv.job": job}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.put(
        &alice,
        &field("displayname"),
        json!({"displayname": "Alice"}),
    )
    .await;
    // Read back, by Alice and by Bob.
    let (st, v) = s.get(&bob, &field("m.tz")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"m.tz": "Europe/Paris"}));
    let (st, all) = s
        .get(
            &bob,
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(all["displayname"], "Alice");
    assert_eq!(all["m.tz"], "Europe/Paris");
    assert_eq!(all["fr.gouv.job"], job);
    // The unstable path of the same.
    let (st, v) = s
        .get(
            &bob,
            &format!(
                "/_matrix/client/unstable/uk.tcpip.msc4133/profile/{}/fr.gouv.job",
                enc(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["fr.gouv.job"], job);

    // Deleting: a custom key, then the display name.
    let (st, _) = s
        .call(
            Method::DELETE,
            &field("fr.gouv.job"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&bob, &field("fr.gouv.job")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(
            Method::DELETE,
            &field("displayname"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&bob, &field("displayname")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Refusals.
    let long = "k".repeat(256);
    let (st, v) = s
        .put(&alice, &field(&long), json!({ long.clone(): 1 }))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_KEY_TOO_LARGE");
    let big = "x".repeat(70_000);
    let (st, v) = s
        .put(
            &alice,
            &field("org.example.big"),
            json!({"org.example.big": big}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_PROFILE_TOO_LARGE");
    let (st, v) = s
        .put(&alice, &field("org.example.x"), json!({"other": 1}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_MISSING_PARAM");
    let (st, v) = s.put(&alice, &field("m.tz"), json!({"m.tz": 3})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .put(&bob, &field("org.example.x"), json!({"org.example.x": 1}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = s
        .call(Method::DELETE, &field("m.tz"), Some(&bob.token), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.get(&bob, &field("m.tz")).await;
    assert_eq!(v, json!({"m.tz": "Europe/Paris"}), "{st}");
    s.stop().await;
}

async fn extended_fields_over_federation(b: Backend) {
    let (a, bsrv, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bsrv.register("bob").await;
    let (st, v) = a
        .put(
            &alice,
            &format!("/_matrix/client/v3/profile/{}/m.tz", enc(&alice.user_id)),
            json!({"m.tz": "Europe/Paris"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = bsrv
        .get(
            &bob,
            &format!("/_matrix/client/v3/profile/{}/m.tz", enc(&alice.user_id)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["m.tz"], "Europe/Paris");
    a.stop().await;
    bsrv.stop().await;
}
