//! Server-side search (POST /search, room_events).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

crate::both_backends!(
    search_joined_rooms_only,
    search_respects_history_visibility,
    search_skips_redacted,
    search_pagination_both_orders,
    search_special_characters_and_bad_input,
    search_context_state_and_groups,
    search_index_backfilled_by_migration,
);

/// Rows in the search index (white box: the redaction must delete its target's row).
async fn index_rows(s: &TestServer) -> i64 {
    use sqlx::Row;
    let rows = sqlx::query("SELECT COUNT(*) FROM event_search")
        .fetch_all(&s.services().db.pool)
        .await
        .unwrap();
    rows[0].try_get(0).unwrap()
}

const SEARCH: &str = "/_matrix/client/v3/search";

fn criteria(term: &str, extra: Value) -> Value {
    json!({ "search_categories": { "room_events": with(json!({ "search_term": term }), extra) } })
}

async fn search(s: &TestServer, u: &User, term: &str, extra: Value) -> Value {
    let (st, v) = s.post(u, SEARCH, criteria(term, extra)).await;
    assert_eq!(st, StatusCode::OK, "search {term:?}: {v}");
    v["search_categories"]["room_events"].clone()
}

fn bodies(re: &Value) -> Vec<String> {
    re["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {re}"))
        .iter()
        .map(|r| {
            let c = &r["result"]["content"];
            c["body"]
                .as_str()
                .or(c["name"].as_str())
                .or(c["topic"].as_str())
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

async fn set_state(s: &TestServer, u: &User, room: &str, kind: &str, content: Value) {
    let (st, v) = s
        .put(
            u,
            &format!("/_matrix/client/v3/rooms/{}/state/{kind}", enc(room)),
            content,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn search_joined_rooms_only(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mine = s
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let theirs = s.create_room(&bob, json!({"preset": "public_chat"})).await;
    let fox = s
        .send_text(&alice, &mine, "t1", "The quick brown fox")
        .await;
    s.send_text(&alice, &mine, "t2", "a lazy dog").await;
    s.send_text(&bob, &theirs, "t1", "quick silver").await;

    let re = search(
        &s,
        &alice,
        "quick",
        json!({"filter": null, "keys": null, "include_state": null, "event_context": null}),
    )
    .await;
    assert_eq!(bodies(&re), vec!["The quick brown fox"], "{re}");
    let re = search(&s, &alice, "QUICK", json!({})).await;
    assert_eq!(bodies(&re), vec!["The quick brown fox"], "{re}");
    assert_eq!(re["count"], 1);
    assert_eq!(re["highlights"], json!(["quick"]));
    let r = &re["results"][0];
    assert!(r["rank"].is_number(), "{r}");
    assert_eq!(r["result"]["event_id"], fox.as_str());
    assert_eq!(r["result"]["room_id"], mine.as_str());
    assert_eq!(r["result"]["sender"], alice.user_id.as_str());
    assert!(r["result"].get("hashes").is_none(), "client format");
    assert!(re.get("next_batch").is_none());
    // Words must all match, as prefixes.
    assert_eq!(
        bodies(&search(&s, &alice, "qui bro", json!({})).await).len(),
        1
    );
    assert!(bodies(&search(&s, &alice, "quick cat", json!({})).await).is_empty());

    // Bob's room is public but Alice is not in it; once she joins, she finds his message.
    assert!(bodies(&search(&s, &alice, "silver", json!({})).await).is_empty());
    s.join(&alice, &theirs).await;
    assert_eq!(
        bodies(&search(&s, &alice, "silver", json!({})).await),
        vec!["quick silver"]
    );
    // Room filters.
    let re = search(&s, &alice, "quick", json!({"filter": {"rooms": [theirs]}})).await;
    assert_eq!(bodies(&re), vec!["quick silver"]);
    let re = search(
        &s,
        &alice,
        "quick",
        json!({"filter": {"not_rooms": [theirs]}}),
    )
    .await;
    assert_eq!(bodies(&re), vec!["The quick brown fox"]);
    // Leaving a room takes it out of the search.
    s.post(
        &alice,
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&theirs)),
        json!({}),
    )
    .await;
    assert!(bodies(&search(&s, &alice, "silver", json!({})).await).is_empty());

    // Room names and topics, by key.
    set_state(
        &s,
        &alice,
        &mine,
        "m.room.name",
        json!({"name": "Quarterly planning"}),
    )
    .await;
    set_state(
        &s,
        &alice,
        &mine,
        "m.room.topic",
        json!({"topic": "Budget quarterly review"}),
    )
    .await;
    let re = search(&s, &alice, "quarterly", json!({"keys": ["content.name"]})).await;
    assert_eq!(bodies(&re), vec!["Quarterly planning"]);
    assert_eq!(re["results"][0]["result"]["type"], "m.room.name");
    let re = search(&s, &alice, "quarterly", json!({"keys": ["content.topic"]})).await;
    assert_eq!(bodies(&re), vec!["Budget quarterly review"]);
    assert_eq!(
        bodies(&search(&s, &alice, "quarterly", json!({})).await).len(),
        2
    );
    assert!(
        bodies(&search(&s, &alice, "quarterly", json!({"keys": ["content.body"]})).await)
            .is_empty()
    );
    s.stop().await;
}

async fn search_respects_history_visibility(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}),
        )
        .await;
    s.send_text(&alice, &room, "t1", "alpha before bob").await;
    s.join(&bob, &room).await;
    s.send_text(&alice, &room, "t2", "alpha after bob").await;

    let re = search(&s, &bob, "alpha", json!({})).await;
    assert_eq!(bodies(&re), vec!["alpha after bob"], "{re}");
    assert_eq!(re["count"], 1, "the hidden event is not counted either");
    let re = search(&s, &bob, "alpha", json!({"order_by": "recent"})).await;
    assert_eq!(bodies(&re), vec!["alpha after bob"]);
    let re = search(&s, &alice, "alpha", json!({"order_by": "recent"})).await;
    assert_eq!(bodies(&re), vec!["alpha after bob", "alpha before bob"]);

    // Many hidden events rank above a visible one: the page still finds it (the index is
    // read in several rounds), and the hidden ones are never shown.
    let carol = s.register("carol").await;
    let room2 = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}),
        )
        .await;
    for i in 0..30 {
        s.send_text(&alice, &room2, &format!("h{i}"), "zeta zeta zeta")
            .await;
    }
    s.join(&carol, &room2).await;
    s.send_text(
        &alice,
        &room2,
        "v",
        "zeta once among many other words in a long message",
    )
    .await;
    let re = search(&s, &carol, "zeta", json!({"filter": {"limit": 5}})).await;
    assert_eq!(
        bodies(&re),
        vec!["zeta once among many other words in a long message"],
        "{re}"
    );
    assert_eq!(re["count"], 1);
    let re = search(&s, &alice, "zeta", json!({"filter": {"limit": 5}})).await;
    assert_eq!(
        bodies(&re)[0],
        "zeta zeta zeta",
        "denser matches rank first"
    );
    s.stop().await;
}

async fn search_skips_redacted(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let split = s.send_text(&alice, &room, "t1", "banana split").await;
    s.send_text(&alice, &room, "t2", "banana bread").await;
    assert_eq!(
        bodies(&search(&s, &alice, "banana", json!({})).await).len(),
        2
    );
    let indexed = index_rows(&s).await;
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&split)
            ),
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        index_rows(&s).await,
        indexed - 1,
        "the redaction unindexes its target"
    );
    let re = search(&s, &alice, "banana", json!({})).await;
    assert_eq!(bodies(&re), vec!["banana bread"], "{re}");
    assert_eq!(re["count"], 1);
    assert!(bodies(&search(&s, &alice, "split", json!({})).await).is_empty());
    assert!(bodies(&search(&s, &alice, "split", json!({"order_by": "recent"})).await).is_empty());
    s.stop().await;
}

/// Every page of a search, following next_batch; (bodies per page).
async fn all_pages(s: &TestServer, u: &User, term: &str, extra: Value) -> Vec<Vec<String>> {
    let mut pages = vec![];
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(t) => format!("{SEARCH}?next_batch={}", enc(t)),
            None => SEARCH.to_owned(),
        };
        let (st, v) = s.post(u, &path, criteria(term, extra.clone())).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let re = &v["search_categories"]["room_events"];
        pages.push(bodies(re));
        match re["next_batch"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
        assert!(pages.len() < 20, "pagination does not end");
    }
    pages
}

async fn search_pagination_both_orders(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let mut sent = HashSet::new();
    for i in 0..12 {
        let body = format!("pagination item {i}");
        s.send_text(&alice, &room, &format!("t{i}"), &body).await;
        sent.insert(body);
    }
    for order in ["recent", "rank"] {
        let pages = all_pages(
            &s,
            &alice,
            "pagination",
            json!({"order_by": order, "filter": {"limit": 5}}),
        )
        .await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 5, 2], "{order}: {pages:?}");
        assert_ne!(pages[0], pages[1]);
        let all: Vec<String> = pages.concat();
        let unique: HashSet<String> = all.iter().cloned().collect();
        assert_eq!(unique.len(), all.len(), "{order}: repeats in {all:?}");
        assert_eq!(unique, sent, "{order}");
        if order == "recent" {
            let expected: Vec<String> = (0..12)
                .rev()
                .map(|i| format!("pagination item {i}"))
                .collect();
            assert_eq!(all, expected, "newest first");
        }
    }

    // A message sent between two pages does not shift the rank pages.
    let (_, v) = s
        .post(
            &alice,
            SEARCH,
            criteria("pagination", json!({"filter": {"limit": 5}})),
        )
        .await;
    let re = &v["search_categories"]["room_events"];
    let first = bodies(re);
    s.send_text(&alice, &room, "late", "pagination latecomer")
        .await;
    let (_, v) = s
        .post(
            &alice,
            &format!(
                "{SEARCH}?next_batch={}",
                enc(re["next_batch"].as_str().unwrap())
            ),
            criteria("pagination", json!({"filter": {"limit": 5}})),
        )
        .await;
    let second = bodies(&v["search_categories"]["room_events"]);
    assert_eq!(second.len(), 5);
    assert!(
        second.iter().all(|b| !first.contains(b)),
        "{first:?} / {second:?}"
    );
    s.stop().await;
}

async fn search_special_characters_and_bad_input(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &room, "t1", "the quick brown fox (and friends)")
        .await;
    for term in [
        "\"",
        "*",
        "AND",
        "(",
        ")",
        "\"quick",
        "fox\" OR \"dog",
        "NEAR(quick fox)",
        "quick*",
        "-fox",
        "^fox",
        "col:fox",
        "'",
        "\\",
        ":*",
        "! & | <->",
        "quick & !fox",
        "{}[]$%#@",
        "🦊",
        // Letters and digits the index tokenizers may treat differently from Rust.
        "²",
        "½ quick",
        "a²b",
        "Ⅻ",
        "٣",
        "İstanbul ß",
        "x\u{301}",
    ] {
        let (st, v) = s.post(&alice, SEARCH, criteria(term, json!({}))).await;
        assert_eq!(st, StatusCode::OK, "term {term:?}: {v}");
        let (st, v) = s
            .post(
                &alice,
                SEARCH,
                criteria(term, json!({"order_by": "recent"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "term {term:?}: {v}");
    }
    // A NUL (which PostgreSQL text cannot hold), in a term or a body, is refused on both
    // databases, as other servers refuse it in events (durability_input tests the other fields).
    let (st, v) = s.post(&alice, SEARCH, criteria("\u{0}", json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/nul",
                enc(&room)
            ),
            json!({"msgtype": "m.text", "body": "nul\u{0}byte inside"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Punctuation only separates words.
    for term in ["\"quick\"", "quick*", "(fox)", "fox AND quick", "FRIENDS)"] {
        let re = search(&s, &alice, term, json!({})).await;
        assert_eq!(bodies(&re).len(), 1, "term {term:?}: {re}");
    }

    for (body, code) in [
        (criteria("", json!({})), "M_INVALID_PARAM"),
        (criteria("   ", json!({})), "M_INVALID_PARAM"),
        (criteria(&"x".repeat(5000), json!({})), "M_INVALID_PARAM"),
        (
            criteria("fox", json!({"order_by": "sideways"})),
            "M_INVALID_PARAM",
        ),
        (
            criteria("fox", json!({"keys": ["content.secret"]})),
            "M_INVALID_PARAM",
        ),
        (
            criteria("fox", json!({"filter": {"rooms": "nope"}})),
            "M_BAD_JSON",
        ),
        (
            json!({"search_categories": {"room_events": {}}}),
            "M_BAD_JSON",
        ),
        (json!({"nothing": 1}), "M_BAD_JSON"),
    ] {
        let (st, v) = s.post(&alice, SEARCH, body.clone()).await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {v}"
        );
    }
    let (st, v) = s
        .post(
            &alice,
            &format!("{SEARCH}?next_batch=garbage"),
            criteria("fox", json!({})),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (st, v) = s
        .post(&alice, SEARCH, json!({"search_categories": {}}))
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({"search_categories": {}})));
    s.stop().await;
}

async fn search_context_state_and_groups(b: Backend) {
    let s = TestServer::start(b).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "Context room"}),
        )
        .await;
    // Before joining: the join carries it (a later change is propagated in the background).
    s.put(
        &bob,
        &format!(
            "/_matrix/client/v3/profile/{}/displayname",
            enc(&bob.user_id)
        ),
        json!({"displayname": "Bobby"}),
    )
    .await;
    s.join(&bob, &room).await;
    for i in 0..4 {
        s.send_text(
            &alice,
            &room,
            &format!("b{i}"),
            &format!("filler before {i}"),
        )
        .await;
    }
    s.send_text(&bob, &room, "m", "the needle here").await;
    for i in 0..4 {
        s.send_text(
            &alice,
            &room,
            &format!("a{i}"),
            &format!("filler after {i}"),
        )
        .await;
    }
    let other = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &other, "n2", "another needle").await;

    let re = search(
        &s,
        &alice,
        "needle",
        json!({
            "filter": {"rooms": [room]},
            "event_context": {"before_limit": 2, "after_limit": 3, "include_profile": true},
            "include_state": true,
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        }),
    )
    .await;
    assert_eq!(bodies(&re), vec!["the needle here"], "{re}");
    let ctx = &re["results"][0]["context"];
    let before: Vec<&str> = ctx["events_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(before, vec!["filler before 3", "filler before 2"], "{ctx}");
    let after: Vec<&str> = ctx["events_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        after,
        vec!["filler after 0", "filler after 1", "filler after 2"]
    );
    assert!(ctx["start"].is_string() && ctx["end"].is_string());
    assert_eq!(
        ctx["profile_info"][&bob.user_id]["displayname"], "Bobby",
        "{ctx}"
    );
    assert!(ctx["profile_info"][&alice.user_id].is_object());

    let state = re["state"][&room].as_array().expect("state of the room");
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Context room"));
    assert!(re["state"].get(&other).is_none());
    let g = &re["groups"]["room_id"][&room];
    assert_eq!(
        g["results"],
        json!([re["results"][0]["result"]["event_id"]])
    );
    assert!(re["groups"]["sender"][&bob.user_id].is_object());

    // Without event_context there is no context; both rooms are searched without a filter.
    let re = search(&s, &alice, "needle", json!({"order_by": "recent"})).await;
    assert_eq!(bodies(&re), vec!["another needle", "the needle here"]);
    assert!(re["results"][0].get("context").is_none());
    assert!(re.get("state").is_none());
    s.stop().await;
}

/// Events stored before the search index existed are indexed by the migration (redacted ones
/// excepted).
async fn search_index_backfilled_by_migration(b: Backend) {
    let mut s1 = TestServer::start(b).await;
    let alice = s1.register("alice").await;
    let room = s1
        .create_room(&alice, json!({"name": "Archive room"}))
        .await;
    s1.send_text(&alice, &room, "t1", "archived message").await;
    let gone = s1.send_text(&alice, &room, "t2", "archived secret").await;
    let (st, _) = s1
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r",
                enc(&room),
                enc(&gone)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Back to the schema before 0008.
    let pool = s1.services().db.pool.clone();
    for stmt in [
        "DROP TABLE event_search",
        "DROP INDEX rooms_public",
        "DELETE FROM schema_migrations WHERE name = '0008_directory_search'",
    ] {
        sqlx::query(stmt).execute(&pool).await.unwrap();
    }
    let url = s1.services().config.database_url.clone();
    // Keep the SQLite file (it lives in the first server's directory).
    let keep = std::mem::replace(&mut s1._dir, tempfile::tempdir().unwrap());
    s1.stop().await;

    let s2 = TestServer::start_with(b, |c| c.database_url = url).await;
    let re = search(&s2, &alice, "archived", json!({})).await;
    assert_eq!(bodies(&re), vec!["archived message"], "{re}");
    let re = search(&s2, &alice, "archive", json!({"keys": ["content.name"]})).await;
    assert_eq!(bodies(&re), vec!["Archive room"], "{re}");
    // New events are indexed as before.
    s2.send_text(&alice, &room, "t3", "archived again").await;
    assert_eq!(
        bodies(&search(&s2, &alice, "archived", json!({})).await).len(),
        2
    );
    s2.stop().await;
    drop(keep);
}
