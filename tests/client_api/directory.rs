//! The room directory (/publicRooms) and the user directory (/user_directory/search).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    public_rooms_listing,
    public_rooms_pagination,
    directory_rate_limit,
    user_directory_scope,
    user_directory_profiles_and_limits,
);

const PUBLIC_ROOMS: &str = "/_matrix/client/v3/publicRooms";
const USER_SEARCH: &str = "/_matrix/client/v3/user_directory/search";

fn ids(v: &Value) -> Vec<String> {
    v["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk in {v}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn public_rooms_listing(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let astro = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": "Astronomy Club",
                   "topic": "Stars and planets", "room_alias_name": "astro"}),
        )
        .await;
    s.join(&bob, &astro).await;
    let cooking = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": "Cooking"}),
        )
        .await;
    // Not published.
    let hidden = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "private", "name": "Hidden"}),
        )
        .await;
    // Published but invite-only: nobody could join it from the directory (Synapse's rule).
    let invite_only = s
        .create_room(
            &alice,
            json!({"preset": "private_chat", "visibility": "public", "name": "Invite only"}),
        )
        .await;

    let (st, v) = s.get(&bob, PUBLIC_ROOMS).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![astro.clone(), cooking.clone()], "{v}");
    assert!(!ids(&v).contains(&hidden) && !ids(&v).contains(&invite_only));
    assert_eq!(v["total_room_count_estimate"], 2);
    assert!(v.get("next_batch").is_none() && v.get("prev_batch").is_none());
    let a = &v["chunk"][0];
    assert_eq!(a["name"], "Astronomy Club");
    assert_eq!(a["topic"], "Stars and planets");
    assert_eq!(a["canonical_alias"], "#astro:localhost");
    assert_eq!(a["num_joined_members"], 2);
    assert_eq!(a["join_rule"], "public");
    assert_eq!(a["world_readable"], false);
    assert_eq!(a["guest_can_join"], false);
    assert!(a.get("room_type").is_none());
    assert_eq!(v["chunk"][1]["num_joined_members"], 1);
    assert!(v["chunk"][1].get("topic").is_none());

    // The legacy prefix answers too, and POST without a filter is the same list.
    let (st, v2) = s.get(&bob, "/_matrix/client/r0/publicRooms").await;
    assert_eq!((st, ids(&v2)), (StatusCode::OK, ids(&v)));
    let (st, v2) = s.post(&bob, PUBLIC_ROOMS, json!({})).await;
    assert_eq!((st, ids(&v2)), (StatusCode::OK, ids(&v)));
    let (st, v2) = s
        .post(&bob, PUBLIC_ROOMS, json!({"filter": null, "since": null}))
        .await;
    assert_eq!((st, ids(&v2)), (StatusCode::OK, ids(&v)));

    // Search term: case-insensitive, on name, topic and canonical alias.
    for (term, want) in [
        ("STARS", vec![astro.clone()]),
        ("astro", vec![astro.clone()]),
        ("cook", vec![cooking.clone()]),
        ("hidden", vec![]),
        ("zzz", vec![]),
    ] {
        let (st, v) = s
            .post(
                &bob,
                PUBLIC_ROOMS,
                json!({"filter": {"generic_search_term": term}}),
            )
            .await;
        assert_eq!((st, ids(&v)), (StatusCode::OK, want), "term {term}: {v}");
    }

    // Room types: null stands for rooms without a type.
    let space = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": "A space",
                   "creation_content": {"type": "m.space"}}),
        )
        .await;
    let (_, v) = s
        .post(
            &bob,
            PUBLIC_ROOMS,
            json!({"filter": {"room_types": ["m.space"]}}),
        )
        .await;
    assert_eq!(ids(&v), vec![space.clone()], "{v}");
    assert_eq!(v["chunk"][0]["room_type"], "m.space");
    let (_, v) = s
        .post(
            &bob,
            PUBLIC_ROOMS,
            json!({"filter": {"room_types": [null]}}),
        )
        .await;
    assert_eq!(ids(&v), vec![astro.clone(), cooking.clone()], "{v}");
    let (_, v) = s.get(&bob, PUBLIC_ROOMS).await;
    assert_eq!(ids(&v).len(), 3);

    // Unpublishing takes a room out.
    let (st, _) = s
        .put(
            &alice,
            &format!("/_matrix/client/v3/directory/list/room/{}", enc(&cooking)),
            json!({"visibility": "private"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(&bob, PUBLIC_ROOMS).await;
    assert!(!ids(&v).contains(&cooking), "{v}");

    // Our own server name is served here; another server is asked over federation
    // (federation_queries.rs), and one that cannot be reached is a 502.
    let (st, v) = s
        .get(&bob, &format!("{PUBLIC_ROOMS}?server=localhost"))
        .await;
    assert_eq!((st, ids(&v).len()), (StatusCode::OK, 2));
    let (st, v) = s
        .get(&bob, &format!("{PUBLIC_ROOMS}?server=other.example"))
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    let (st, _) = s
        .post(
            &bob,
            &format!("{PUBLIC_ROOMS}?server=other.example"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);

    // Bad input.
    let (st, v) = s.get(&bob, &format!("{PUBLIC_ROOMS}?since=garbage")).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, _) = s.get(&bob, &format!("{PUBLIC_ROOMS}?limit=many")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = s
        .post(
            &bob,
            PUBLIC_ROOMS,
            json!({"filter": {"room_types": "m.space"}}),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    let (st, _) = s
        .post(
            &bob,
            PUBLIC_ROOMS,
            json!({"filter": {"generic_search_term": "x".repeat(10_000)}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Authentication is required (Synapse's default).
    let (st, _) = s.call(reqwest::Method::GET, PUBLIC_ROOMS, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn public_rooms_pagination(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let mut created = HashSet::new();
    for i in 0..5 {
        created.insert(
            s.create_room(
                &alice,
                json!({"preset": "public_chat", "visibility": "public", "name": format!("Room {i}")}),
            )
            .await,
        );
    }
    // A room with two members comes first.
    let bob = s.register("bob").await;
    let big = created.iter().next().unwrap().clone();
    s.join(&bob, &big).await;

    let mut seen: Vec<String> = vec![];
    let mut since: Option<String> = None;
    let mut pages = vec![];
    loop {
        let path = match &since {
            Some(t) => format!("{PUBLIC_ROOMS}?limit=2&since={}", enc(t)),
            None => format!("{PUBLIC_ROOMS}?limit=2"),
        };
        let (st, v) = s.get(&alice, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["total_room_count_estimate"], 5);
        assert_eq!(v.get("prev_batch").is_some(), since.is_some(), "{v}");
        seen.extend(ids(&v));
        pages.push(ids(&v));
        match v["next_batch"].as_str() {
            Some(t) => since = Some(t.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_ne!(pages[0], pages[1]);
    assert_eq!(seen[0], big, "largest room first");
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no room twice: {seen:?}");
    assert_eq!(unique, created);

    // POST pages the same way, with the filter kept.
    let (_, p1) = s
        .post(
            &alice,
            PUBLIC_ROOMS,
            json!({"limit": 2, "filter": {"generic_search_term": "room"}}),
        )
        .await;
    let (_, p2) = s
        .post(
            &alice,
            PUBLIC_ROOMS,
            json!({"limit": 2, "since": p1["next_batch"], "filter": {"generic_search_term": "room"}}),
        )
        .await;
    assert_eq!(ids(&p1), pages[0]);
    assert_eq!(ids(&p2), pages[1]);
    // prev_batch leads back to the first page.
    let (_, back) = s
        .post(
            &alice,
            PUBLIC_ROOMS,
            json!({"limit": 2, "since": p2["prev_batch"], "filter": {"generic_search_term": "room"}}),
        )
        .await;
    assert_eq!(ids(&back), pages[0]);
    s.stop().await;
}

async fn directory_rate_limit(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.rate_limits.search = palabre::config::RateLimit {
            per_second: 0.1,
            burst: 3.0,
        }
    })
    .await;
    let alice = s.register("alice").await;
    let mut limited = None;
    for i in 0..5 {
        // One budget for the three searches.
        let (st, v) = match i % 3 {
            0 => s.get(&alice, PUBLIC_ROOMS).await,
            1 => {
                s.post(&alice, USER_SEARCH, json!({"search_term": "bob"}))
                    .await
            }
            _ => {
                let body = json!({"search_categories": {"room_events": {"search_term": "hi"}}});
                s.post(&alice, "/_matrix/client/v3/search", body).await
            }
        };
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, v));
            break;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (i, v) = limited.expect("searches are rate-limited");
    assert_eq!(i, 3, "the burst of 3 is honoured, the fourth search waits");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0);
    // Per user: another user still searches.
    let bob = s.register("bob").await;
    let (st, _) = s.get(&bob, PUBLIC_ROOMS).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

fn found(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn search_users(s: &TestServer, u: &User, term: &str) -> Value {
    let (st, v) = s.post(u, USER_SEARCH, json!({ "search_term": term })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn user_directory_scope(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await; // shares a private room with alice
    let carol = s.register("carol").await; // in an unpublished room with join rule public
    let gina = s.register("gina").await; // in a published invite-only room
    let dave = s.register("dave").await; // in a private room, nothing shared
    let eve = s.register("eve").await; // in a private room with dave only

    let private = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    s.invite(&alice, &private, &bob).await;
    s.join(&bob, &private).await;
    s.create_room(
        &carol,
        json!({"preset": "public_chat", "visibility": "private"}),
    )
    .await;
    s.create_room(
        &gina,
        json!({"preset": "private_chat", "visibility": "public"}),
    )
    .await;
    let dave_room = s
        .create_room(&dave, json!({"preset": "private_chat"}))
        .await;
    s.invite(&dave, &dave_room, &eve).await;
    s.join(&eve, &dave_room).await;

    assert_eq!(
        found(&search_users(&s, &alice, "bob").await),
        vec![bob.user_id.clone()]
    );
    assert_eq!(
        found(&search_users(&s, &alice, "CAROL").await),
        vec![carol.user_id.clone()]
    );
    assert_eq!(
        found(&search_users(&s, &alice, "gin").await),
        vec![gina.user_id.clone()]
    );
    assert_eq!(
        found(&search_users(&s, &alice, "@gina:local").await),
        vec![gina.user_id.clone()]
    );
    let v = search_users(&s, &alice, "dave").await;
    assert_eq!(found(&v), Vec::<String>::new(), "no shared or public room");
    assert_eq!(v["limited"], false);
    assert!(found(&search_users(&s, &alice, "eve").await).is_empty());
    // Dave and Eve find each other; Bob finds Alice through their room.
    assert_eq!(
        found(&search_users(&s, &dave, "eve").await),
        vec![eve.user_id.clone()]
    );
    assert!(found(&search_users(&s, &bob, "alice").await).contains(&alice.user_id));

    // LIKE wildcards in the term are plain characters.
    assert!(found(&search_users(&s, &alice, "%").await).is_empty());
    assert!(found(&search_users(&s, &alice, "_").await).is_empty());

    // Leaving the shared room hides Bob again.
    let (st, _) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&private)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(found(&search_users(&s, &alice, "bob").await).is_empty());

    // Bad input.
    let (st, v) = s.post(&alice, USER_SEARCH, json!({})).await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    let (st, _) = s
        .post(
            &alice,
            USER_SEARCH,
            json!({"search_term": "a", "limit": "ten"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(
            &alice,
            USER_SEARCH,
            json!({"search_term": "a".repeat(5000)}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

async fn user_directory_profiles_and_limits(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let lobby = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public"}),
        )
        .await;
    let mut users = vec![];
    for name in ["sam", "samantha", "user1", "user2", "user3", "eve", "frank"] {
        let u = s.register(name).await;
        s.join(&u, &lobby).await;
        users.push(u);
    }
    let (sam, eve, frank) = (&users[0], &users[5], &users[6]);

    // A display name change shows at once, and display names are searched by word.
    let (st, _) = s
        .put(
            sam,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&sam.user_id)
            ),
            json!({"displayname": "Samuel Zebra"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = search_users(&s, &alice, "zebra").await;
    assert_eq!(found(&v), vec![sam.user_id.clone()]);
    assert_eq!(v["results"][0]["display_name"], "Samuel Zebra");
    s.put(
        sam,
        &format!(
            "/_matrix/client/v3/profile/{}/displayname",
            enc(&sam.user_id)
        ),
        json!({"displayname": "Samuel Okapi"}),
    )
    .await;
    assert!(found(&search_users(&s, &alice, "zebra").await).is_empty());
    assert_eq!(
        found(&search_users(&s, &alice, "okap").await),
        vec![sam.user_id.clone()]
    );

    // Exact localpart first.
    let v = search_users(&s, &alice, "sam").await;
    assert_eq!(found(&v)[0], sam.user_id, "{v}");
    assert_eq!(found(&v).len(), 2);

    // `limited` when more users match than the limit.
    let (_, v) = s
        .post(
            &alice,
            USER_SEARCH,
            json!({"search_term": "user", "limit": 2}),
        )
        .await;
    assert_eq!((found(&v).len(), &v["limited"]), (2, &json!(true)), "{v}");
    let (_, v) = s
        .post(
            &alice,
            USER_SEARCH,
            json!({"search_term": "user", "limit": 3}),
        )
        .await;
    assert_eq!((found(&v).len(), &v["limited"]), (3, &json!(false)), "{v}");
    let v = search_users(&s, &alice, "user").await;
    assert_eq!((found(&v).len(), &v["limited"]), (3, &json!(false)));

    // Deactivated users are never found: through the API (which also leaves their rooms)...
    assert_eq!(
        found(&search_users(&s, &alice, "eve").await),
        vec![eve.user_id.clone()]
    );
    let (st, v) = s
        .post(
            eve,
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password("eve", "correct horse 1")}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(found(&search_users(&s, &alice, "eve").await).is_empty());
    // ...and even while still joined to a public room.
    assert_eq!(
        found(&search_users(&s, &alice, "frank").await),
        vec![frank.user_id.clone()]
    );
    s.services()
        .db
        .deactivate_user(&frank.user_id)
        .await
        .unwrap();
    assert!(found(&search_users(&s, &alice, "frank").await).is_empty());
    s.stop().await;
}
