//! The media admin API through HTTP: details, a user's media walked page by page, a room's
//! media, quarantine (by id, by user, by room; the same content under a new id; protected
//! media spared) refused on download locally and over federation, deletions (one, by date with
//! avatars kept, a user's) that remove the files no row names, the remote cache purge,
//! statistics, and non-admins refused.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    common::*,
    media::{fetch, mxc_path, upload},
};

crate::both_backends!(media_admin_local, media_admin_federated);

/// The files in the media store (thumbnails and uploads; not the temporary folder).
fn stored_files(s: &TestServer) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n == "tmp") {
                        0
                    } else {
                        walk(&path)
                    }
                } else {
                    1
                }
            })
            .sum()
    }
    walk(&s._dir.path().join("media"))
}

async fn download_status(s: &TestServer, u: &User, mxc: &str) -> StatusCode {
    fetch(
        s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{mxc}"),
    )
    .await
    .status
}

async fn admin_post(s: &TestServer, admin: &User, path: &str) -> (StatusCode, Value) {
    s.post(admin, path, json!({})).await
}

async fn admin_delete(s: &TestServer, admin: &User, path: &str) -> (StatusCode, Value) {
    s.call(Method::DELETE, path, Some(&admin.token), None).await
}

async fn media_admin_local(b: Backend) {
    let s = TestServer::start(b).await;
    let admin = s.admin_user("boss").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mut mine = vec![];
    for i in 0..5u8 {
        let (st, v) = upload(
            &s,
            &alice,
            "text/plain",
            Some(&format!("f{i}.txt")),
            vec![i; 100 + i as usize],
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        mine.push(mxc_path(&v));
    }
    let id = |m: &str| m.rsplit('/').next().unwrap().to_owned();
    // Details.
    let (st, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/media/{}", mine[0]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let info = &v["media_info"];
    assert_eq!(info["user_id"], alice.user_id);
    assert_eq!(info["media_id"], id(&mine[0]));
    assert_eq!(info["media_length"], 100);
    assert_eq!(info["upload_name"], "f0.txt");
    assert_eq!(info["media_type"], "text/plain");
    assert_eq!(info["quarantined_by"], Value::Null);
    assert_eq!(info["safe_from_quarantine"], false);
    let (st, _) = s
        .get(&admin, "/_synapse/admin/v1/media/localhost/nosuchmedia")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A user's media, two by two, every one once, ordered by size.
    let mut seen = vec![];
    let mut from = 0;
    loop {
        let (st, v) = s
            .get(
                &admin,
                &format!(
                    "/_synapse/admin/v1/users/{}/media?limit=2&from={from}&order_by=media_length",
                    enc(&alice.user_id)
                ),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["total"], 5);
        for m in v["media"].as_array().unwrap() {
            seen.push(m["media_id"].as_str().unwrap().to_owned());
            for key in [
                "media_type",
                "media_length",
                "upload_name",
                "created_ts",
                "last_access_ts",
                "quarantined_by",
                "safe_from_quarantine",
            ] {
                assert!(m.get(key).is_some(), "{key}: {m}");
            }
        }
        match v.get("next_token") {
            Some(n) => from = n.as_i64().expect("next_token is an integer"),
            None => break,
        }
    }
    assert_eq!(seen, mine.iter().map(|m| id(m)).collect::<Vec<_>>());
    let (st, _) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/users/{}/media?order_by=nonsense",
                enc(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A room's media.
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/img",
                enc(&room)
            ),
            json!({ "msgtype": "m.file", "body": "f", "url": format!("mxc://{}", mine[1]) }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.put(
        &alice,
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/rem",
            enc(&room)
        ),
        json!({ "msgtype": "m.image", "body": "i", "url": "mxc://elsewhere.example/abcdef" }),
    )
    .await;
    let (st, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/room/{}/media", enc(&room)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["local"], json!([format!("mxc://{}", mine[1])]));
    assert_eq!(v["remote"], json!(["mxc://elsewhere.example/abcdef"]));

    // Quarantine by id: refused to everyone, the uploader too; released again.
    assert_eq!(download_status(&s, &bob, &mine[0]).await, StatusCode::OK);
    let (st, v) = admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/media/quarantine/{}", mine[0]),
    )
    .await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    assert_eq!(
        download_status(&s, &bob, &mine[0]).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download_status(&s, &alice, &mine[0]).await,
        StatusCode::NOT_FOUND
    );
    let f = fetch(
        &s,
        Some(&bob.token),
        &format!(
            "/_matrix/client/v1/media/thumbnail/{}?width=32&height=32",
            mine[0]
        ),
    )
    .await;
    assert_eq!(f.status, StatusCode::NOT_FOUND);
    let (_, v) = s
        .get(&admin, &format!("/_synapse/admin/v1/media/{}", mine[0]))
        .await;
    assert_eq!(v["media_info"]["quarantined_by"], admin.user_id);
    // The same bytes uploaded again are quarantined at once.
    let (_, v) = upload(&s, &bob, "text/plain", None, vec![0u8; 100]).await;
    let copy = mxc_path(&v);
    assert_eq!(
        download_status(&s, &bob, &copy).await,
        StatusCode::NOT_FOUND
    );
    admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/media/unquarantine/{}", mine[0]),
    )
    .await;
    assert_eq!(download_status(&s, &bob, &mine[0]).await, StatusCode::OK);
    assert_eq!(
        download_status(&s, &bob, &copy).await,
        StatusCode::OK,
        "released with it"
    );
    // By user, a protected media spared.
    let (st, _) = admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/media/protect/{}", id(&mine[2])),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = admin_post(
        &s,
        &admin,
        &format!(
            "/_synapse/admin/v1/user/{}/media/quarantine",
            enc(&alice.user_id)
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["num_quarantined"], 5, "4 of alice's and bob's copy: {v}");
    assert_eq!(download_status(&s, &bob, &mine[2]).await, StatusCode::OK);
    assert_eq!(
        download_status(&s, &bob, &mine[3]).await,
        StatusCode::NOT_FOUND
    );
    for m in &mine {
        admin_post(
            &s,
            &admin,
            &format!("/_synapse/admin/v1/media/unquarantine/{m}"),
        )
        .await;
    }
    // By room: the local media of its events and the remote one named.
    let (st, v) = admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/room/{}/media/quarantine", enc(&room)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["num_quarantined"], 2, "{v}");
    assert_eq!(
        download_status(&s, &bob, &mine[1]).await,
        StatusCode::NOT_FOUND
    );
    let (st, _) = admin_post(&s, &admin, "/_synapse/admin/v1/media/protect/nosuchmedia").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every change of mark, in order: 1 + the copy on arrival 1 + release 2 + by user 5 +
    // releases 5 + by room 2.
    let (st, v) = s
        .get(&admin, "/_synapse/admin/v1/media/quarantine_changes")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 16, "{v}");
    assert_eq!(
        changes[0],
        json!({ "origin": "localhost", "media_id": id(&mine[0]), "quarantined": true })
    );
    assert_eq!(
        changes[1],
        json!({ "origin": "localhost", "media_id": id(&copy), "quarantined": true })
    );
    assert_eq!(changes[2]["quarantined"], false);
    let last_two = [changes[14].clone(), changes[15].clone()];
    assert!(
        last_two.contains(
            &json!({ "origin": "elsewhere.example", "media_id": "abcdef", "quarantined": true })
        ),
        "{v}"
    );
    assert!(
        last_two.contains(
            &json!({ "origin": "localhost", "media_id": id(&mine[1]), "quarantined": true })
        ),
        "{v}"
    );
    let next = v["next_batch"].as_i64().unwrap();
    let (_, v) = s
        .get(
            &admin,
            &format!("/_synapse/admin/v1/media/quarantine_changes?from={next}"),
        )
        .await;
    assert_eq!(v, json!({ "next_batch": next, "changes": [] }));
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/media/quarantine_changes?from=2")
        .await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 14, "{v}");
    let (st, _) = s
        .get(
            &admin,
            &format!(
                "/_synapse/admin/v1/media/quarantine_changes?from={}",
                next + 1
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a position not reached yet");

    // Deletions: one, then by date (alice's avatar kept), the files going with their rows.
    let before = stored_files(&s);
    let (st, v) = admin_delete(&s, &admin, &format!("/_synapse/admin/v1/media/{}", mine[4])).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "deleted_media": [id(&mine[4])], "total": 1 }));
    assert_eq!(stored_files(&s), before - 1);
    let (st, _) = s
        .get(&admin, &format!("/_synapse/admin/v1/media/{}", mine[4]))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = admin_delete(
        &s,
        &admin,
        "/_synapse/admin/v1/media/elsewhere.example/abcdef",
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "remote media are not deleted this way"
    );
    s.put(
        &alice,
        &format!(
            "/_matrix/client/v3/profile/{}/avatar_url",
            enc(&alice.user_id)
        ),
        json!({ "avatar_url": format!("mxc://{}", mine[3]) }),
    )
    .await;
    let (st, v) = admin_post(&s, &admin, "/_synapse/admin/v1/media/delete?before_ts=1000").await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "seconds, not milliseconds: {v}"
    );
    let (st, v) = admin_post(&s, &admin, "/_synapse/admin/v1/media/delete").await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM"))
    );
    let now = palabre::util::now_ms() + 1000;
    let (st, v) = admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/media/delete?before_ts={now}&size_gt=101"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Over 101 bytes, not protected (mine[2]), not an avatar (mine[3]), not deleted already.
    assert_eq!(v["total"], 0, "{v}");
    let (st, v) = admin_post(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/media/delete?before_ts={now}"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut deleted: Vec<String> = v["deleted_media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    deleted.sort();
    let mut expect = vec![id(&mine[0]), id(&mine[1]), id(&copy)];
    expect.sort();
    assert_eq!(deleted, expect, "{v}");
    assert_eq!(
        download_status(&s, &bob, &mine[3]).await,
        StatusCode::OK,
        "the avatar is kept"
    );
    assert_eq!(
        download_status(&s, &bob, &mine[0]).await,
        StatusCode::NOT_FOUND
    );
    // A user's media: the page selected.
    let (st, v) = admin_delete(
        &s,
        &admin,
        &format!("/_synapse/admin/v1/users/{}/media", enc(&alice.user_id)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(stored_files(&s), 0, "no file left without a row");
    // The deletions are admin jobs, recorded.
    let (_, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/scheduled_tasks?action_name=delete_media",
        )
        .await;
    let tasks = v["scheduled_tasks"].as_array().unwrap();
    assert!(
        tasks.len() >= 4 && tasks.iter().all(|t| t["status"] == "complete"),
        "{v}"
    );

    // Statistics.
    for i in 0..3u8 {
        upload(&s, &bob, "text/plain", None, vec![50 + i; 10]).await;
    }
    upload(&s, &alice, "text/plain", None, vec![99; 7]).await;
    let (st, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/statistics/users/media?order_by=media_count&dir=b",
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["users"][0]["user_id"], bob.user_id);
    assert_eq!(v["users"][0]["media_count"], 3);
    assert_eq!(v["users"][0]["media_length"], 30);
    assert_eq!(v["users"][0]["displayname"], "bob");
    let (_, v) = s
        .get(
            &admin,
            "/_synapse/admin/v1/statistics/users/media?search_term=ali",
        )
        .await;
    assert_eq!(v["total"], 1, "{v}");
    let (_, v) = s
        .get(&admin, "/_synapse/admin/v1/statistics/users/media?limit=1")
        .await;
    assert_eq!(v["next_token"], 1, "{v}");
    let (st, _) = s
        .get(
            &admin,
            "/_synapse/admin/v1/statistics/users/media?from_ts=10&until_ts=5",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = s
        .get(&admin, "/_synapse/admin/v1/statistics/database/rooms")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rooms"][0]["room_id"], room.as_str(), "{v}");
    assert!(v["rooms"][0]["estimated_size"].as_i64().unwrap() > 0);

    // Not for others.
    for (m, path) in [
        (Method::GET, format!("/_synapse/admin/v1/media/{}", mine[2])),
        (
            Method::POST,
            format!("/_synapse/admin/v1/media/quarantine/{}", mine[2]),
        ),
        (
            Method::GET,
            "/_synapse/admin/v1/statistics/users/media".to_owned(),
        ),
        (
            Method::POST,
            "/_synapse/admin/v1/purge_media_cache?before_ts=99999999999".to_owned(),
        ),
    ] {
        let (st, v) = s
            .call(m.clone(), &path, Some(&bob.token), Some(json!({})))
            .await;
        assert_eq!(
            (st, v["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{path}"
        );
        let (st, _) = s.call(m, &path, None, Some(json!({}))).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    s.stop().await;
}

/// Two servers: B's quarantine is refused to A over federation; A's quarantine of B's media
/// (cached or not yet) is refused to A's users; A's cache purge removes the cached copy.
async fn media_admin_federated(b: Backend) {
    let (a, bs, _cert) = two_servers_with(b, |_| {}, |_| {}).await;
    let a_admin = a.admin_user("boss").await;
    let b_admin = bs.admin_user("boss").await;
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let mut up = vec![];
    for i in 0..3u8 {
        let (st, v) = upload(&bs, &bob, "text/plain", None, vec![i + 1; 64]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        up.push(mxc_path(&v));
    }
    // B quarantines its media: A cannot fetch it.
    let (st, _) = admin_post(
        &bs,
        &b_admin,
        &format!("/_synapse/admin/v1/media/quarantine/{}", up[0]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        download_status(&a, &alice, &up[0]).await,
        StatusCode::NOT_FOUND
    );
    // A caches one, then quarantines it.
    assert_eq!(download_status(&a, &alice, &up[1]).await, StatusCode::OK);
    let (st, v) = a
        .get(&a_admin, &format!("/_synapse/admin/v1/media/{}", up[1]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["media_info"]["user_id"], Value::Null);
    assert_eq!(v["media_info"]["media_length"], 64);
    admin_post(
        &a,
        &a_admin,
        &format!("/_synapse/admin/v1/media/quarantine/{}", up[1]),
    )
    .await;
    assert_eq!(
        download_status(&a, &alice, &up[1]).await,
        StatusCode::NOT_FOUND
    );
    // A quarantines one it never fetched: it is never fetched while quarantined.
    admin_post(
        &a,
        &a_admin,
        &format!("/_synapse/admin/v1/media/quarantine/{}", up[2]),
    )
    .await;
    assert_eq!(
        download_status(&a, &alice, &up[2]).await,
        StatusCode::NOT_FOUND
    );
    admin_post(
        &a,
        &a_admin,
        &format!("/_synapse/admin/v1/media/unquarantine/{}", up[2]),
    )
    .await;
    assert_eq!(download_status(&a, &alice, &up[2]).await, StatusCode::OK);
    // The purge of the remote cache: the quarantined copy stays (its mark is what refuses it).
    let files = stored_files(&a);
    assert_eq!(files, 2);
    let later = palabre::util::now_ms() + 1000;
    let (st, v) = admin_post(
        &a,
        &a_admin,
        &format!("/_synapse/admin/v1/purge_media_cache?before_ts={later}"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "deleted": 1 }));
    assert_eq!(stored_files(&a), 1);
    assert_eq!(
        download_status(&a, &alice, &up[1]).await,
        StatusCode::NOT_FOUND
    );
    // Fetched again on demand.
    assert_eq!(download_status(&a, &alice, &up[2]).await, StatusCode::OK);
    assert_eq!(stored_files(&a), 2);
    a.stop().await;
    bs.stop().await;
}
