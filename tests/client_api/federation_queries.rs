//! Queries between two in-process servers over TLS: media (federation multipart endpoints,
//! remote downloads cached here, remote thumbnails, `Location` redirects), device lists and keys
//! (query, claim, the remote key cache), the room directory and aliases of another server, and
//! the refusal of unsigned requests.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use reqwest::{Method, StatusCode};
use ruma::ServerName;
use serde_json::{json, Value};
use vodozemac::Ed25519SecretKey;

use crate::{
    common::*,
    e2ee::{cross_key, sign_with, verifies, Device},
    media::{fetch, image_bytes, mxc_path, upload},
};

fn server(name: &str) -> ruma::OwnedServerName {
    ServerName::parse(name).unwrap()
}

/// The parts of a `multipart/mixed` body: (headers text, body) each.
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    let delim = format!("\r\n--{boundary}").into_bytes();
    let mut body = [b"\r\n".as_slice(), body].concat();
    let mut out = vec![];
    let find = |hay: &[u8], n: &[u8]| hay.windows(n.len()).position(|w| w == n);
    let mut at = find(&body, &delim).expect("first boundary");
    loop {
        body.drain(..at + delim.len());
        if body.starts_with(b"--") {
            return out;
        }
        assert!(body.starts_with(b"\r\n"));
        body.drain(..2);
        let head_end = find(&body, b"\r\n\r\n").expect("part headers");
        let head = String::from_utf8(body[..head_end].to_vec()).unwrap();
        body.drain(..head_end + 4);
        at = find(&body, &delim).expect("next boundary");
        out.push((head, body[..at].to_vec()));
    }
}

async fn media(b: Backend) {
    let (a, bs, _cert) = two_servers_with(b, |c| c.media.max_upload_bytes = 150_000, |_| {}).await;
    let b_name = bs.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;

    // A file and two images uploaded on B.
    let data: Vec<u8> = (0..120_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let (st, v) = upload(
        &bs,
        &bob,
        "application/pdf",
        Some("rapport final.pdf"),
        data.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let doc = mxc_path(&v);
    let doc_id = doc.rsplit('/').next().unwrap().to_owned();
    let png = image_bytes(200, 150, image::ImageFormat::Png);
    let (_, v) = upload(&bs, &bob, "image/png", Some("chat.png"), png.clone()).await;
    let img1 = mxc_path(&v);
    let (_, v) = upload(&bs, &bob, "image/png", None, png.clone()).await;
    let img2 = mxc_path(&v);
    let big: Vec<u8> = vec![7u8; 200_000];
    let (_, v) = upload(&bs, &bob, "application/octet-stream", None, big).await;
    let too_big = mxc_path(&v);

    // B's federation endpoint answers multipart: `{}` metadata, then the file.
    let resp = a
        .services()
        .federation()
        .federation_send(
            &server(&b_name),
            Method::GET,
            &format!("/_matrix/federation/v1/media/download/{doc_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let body = resp.bytes().await.unwrap();
    let p = parts(&ct, &body);
    assert_eq!(p.len(), 2, "two parts");
    assert_eq!(p[0].0, "Content-Type: application/json");
    assert_eq!(serde_json::from_slice::<Value>(&p[0].1).unwrap(), json!({}));
    assert!(
        p[1].0.contains("Content-Type: application/pdf"),
        "{}",
        p[1].0
    );
    assert!(
        p[1].0
            .contains("Content-Disposition: attachment; filename*=utf-8''rapport%20final.pdf"),
        "{}",
        p[1].0
    );
    assert_eq!(p[1].1, data);
    // A media B does not have: 404 over federation.
    let resp = a
        .services()
        .federation()
        .federation_send(
            &server(&b_name),
            Method::GET,
            "/_matrix/federation/v1/media/download/nosuchmedia",
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Alice downloads B's file through A: the same bytes, with the safe headers.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{doc}"),
    )
    .await;
    assert_eq!(
        f.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&f.bytes)
    );
    assert_eq!(f.bytes, data);
    assert_eq!(f.header("content-type"), "application/pdf");
    assert_eq!(
        f.header("content-disposition"),
        "attachment; filename*=utf-8''rapport%20final.pdf"
    );
    assert!(f.header("content-security-policy").starts_with("sandbox"));
    assert_eq!(f.header("x-content-type-options"), "nosniff");
    // With a file name in the path.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{doc}/autre.pdf"),
    )
    .await;
    assert_eq!(f.bytes, data);
    assert_eq!(
        f.header("content-disposition"),
        "attachment; filename*=utf-8''autre.pdf"
    );
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{img1}"),
    )
    .await;
    assert_eq!(
        (f.status, f.bytes.as_slice()),
        (StatusCode::OK, png.as_slice())
    );
    assert_eq!(
        f.header("content-disposition"),
        "inline; filename*=utf-8''chat.png"
    );

    // A thumbnail of a media A has not fetched: asked of B, at a size A serves.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/thumbnail/{img2}?width=30&height=30&method=crop"),
    )
    .await;
    assert_eq!(
        f.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&f.bytes)
    );
    assert_eq!(f.header("content-type"), "image/png");
    let thumb = image::load_from_memory(&f.bytes).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (32, 32));

    // Unknown or malformed remote media: 404; too large for A: refused, not cached.
    for id in ["nosuchmedia", "bad.id", "a%2Fb"] {
        let f = fetch(
            &a,
            Some(&alice.token),
            &format!("/_matrix/client/v1/media/download/{b_name}/{id}"),
        )
        .await;
        assert_eq!(f.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(f.json()["errcode"], "M_NOT_FOUND");
    }
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{too_big}"),
    )
    .await;
    assert_eq!(f.status, StatusCode::BAD_GATEWAY);
    assert_eq!(f.json()["errcode"], "M_TOO_LARGE");

    // B goes away: what A fetched is served from its own copy.
    bs.stop().await;
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{doc}"),
    )
    .await;
    assert_eq!((f.status, f.bytes == data), (StatusCode::OK, true));
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/thumbnail/{img2}?width=32&height=32&method=crop"),
    )
    .await;
    assert_eq!(f.status, StatusCode::OK, "cached remote thumbnail");
    // A thumbnail of a cached original is made here.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/thumbnail/{img1}?width=96&height=96&method=crop"),
    )
    .await;
    assert_eq!(f.status, StatusCode::OK);
    let thumb = image::load_from_memory(&f.bytes).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (96, 96));
    // Nothing cached and B unreachable: 502.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/thumbnail/{img2}?width=96&height=96&method=crop"),
    )
    .await;
    assert_eq!(f.status, StatusCode::BAD_GATEWAY);
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{too_big}"),
    )
    .await;
    assert_eq!(f.status, StatusCode::BAD_GATEWAY);
    // The legacy unauthenticated endpoints serve no remote media.
    let f = fetch(&a, None, &format!("/_matrix/media/v3/download/{doc}")).await;
    assert_eq!(f.status, StatusCode::NOT_FOUND);
    a.stop().await;
}

/// A fake origin server answering the federation media endpoint with `Location` parts, or a
/// truncated file; counts the downloads asked of it.
async fn fake_origin(cert: &FedCert, port: u16, data: Vec<u8>, hits: Arc<AtomicUsize>) {
    use axum::{extract::Path, response::IntoResponse, routing::get};
    let multipart = |second: String| {
        (
            [("content-type", "multipart/mixed; boundary=XyZ")],
            format!("--XyZ\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--XyZ\r\n{second}"),
        )
            .into_response()
    };
    let app = axum::Router::new()
        .route(
            "/_matrix/federation/v1/media/download/{id}",
            get(move |Path(id): Path<String>| {
                hits.fetch_add(1, Ordering::SeqCst);
                async move {
                    match id.as_str() {
                        "redirected" => multipart(format!(
                            "Location: https://localhost:{port}/files/blob\r\n\r\n\r\n--XyZ--\r\n"
                        )),
                        "private" => multipart(format!(
                            "Location: https://127.0.0.2:{port}/files/blob\r\n\r\n\r\n--XyZ--\r\n"
                        )),
                        "truncated" => {
                            multipart("Content-Type: text/plain\r\n\r\nthe file stops here".into())
                        }
                        _ => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .route(
            "/files/blob",
            get(move || {
                let data = data.clone();
                async move {
                    (
                        [
                            ("content-type", "application/pdf"),
                            ("content-disposition", "attachment; filename=\"doc.pdf\""),
                        ],
                        data,
                    )
                }
            }),
        );
    let listener = palabre::tls::TlsListener::bind(&palabre::config::TlsConfig {
        listen: format!("127.0.0.1:{port}"),
        certificate: cert.cert.clone(),
        private_key: cert.key.clone(),
    })
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

async fn media_location(b: Backend) {
    let cert = fed_cert();
    let (pa, pc) = (free_port(), free_port());
    let a = TestServer::start_with(b, |c| {
        federating(c, &cert, pa);
        c.media.redirect_ip_allow_list = vec!["127.0.0.1/32".into(), "::1/128".into()];
    })
    .await;
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let hits = Arc::new(AtomicUsize::new(0));
    fake_origin(&cert, pc, data.clone(), hits.clone()).await;
    let alice = a.register("alice").await;
    let origin = format!("localhost:{pc}");

    // The second part is a Location: A follows it and keeps the file.
    let path = format!("/_matrix/client/v1/media/download/{origin}/redirected");
    let f = fetch(&a, Some(&alice.token), &path).await;
    assert_eq!(
        f.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&f.bytes)
    );
    assert_eq!(f.bytes, data);
    assert_eq!(f.header("content-type"), "application/pdf");
    assert_eq!(
        f.header("content-disposition"),
        "attachment; filename*=utf-8''doc.pdf"
    );
    let f = fetch(&a, Some(&alice.token), &path).await;
    assert_eq!(f.bytes, data);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second download is local"
    );

    // A Location into a range that is not allowed is not followed.
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{origin}/private"),
    )
    .await;
    assert_eq!(f.status, StatusCode::BAD_GATEWAY);

    // A file cut short is never kept: each request tries again.
    for n in 0..2 {
        let f = fetch(
            &a,
            Some(&alice.token),
            &format!("/_matrix/client/v1/media/download/{origin}/truncated"),
        )
        .await;
        assert_eq!(f.status, StatusCode::BAD_GATEWAY, "attempt {n}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    a.stop().await;
}

async fn keys(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let b_name = bs.name();
    let alice = a.register("alice").await;
    let mut bob = Device::new(bs.register("bob").await);
    let bid = bob.user.user_id.clone();
    let dev = bob.user.device_id.clone();
    bob.upload(&bs, 1).await;
    let (st, _) = bs
        .put(
            &bob.user,
            &format!("/_matrix/client/v3/devices/{dev}"),
            json!({ "display_name": "Téléphone de Bob" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Cross-signing keys, and the device signed by the self-signing key.
    let (master, ssk, usk) = (
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
        Ed25519SecretKey::new(),
    );
    let cross = json!({
        "master_key": cross_key(&bid, "master", &master, None),
        "self_signing_key": cross_key(&bid, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_key(&bid, "user_signing", &usk, Some(&master)),
    });
    let (st, v) = bs
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/device_signing/upload",
            cross.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let signed = sign_with(&bob.device_keys(), &bid, &ssk);
    let (st, v) = bs
        .post(
            &bob.user,
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &bid: { &dev: signed } }),
        )
        .await;
    assert_eq!((st, v["failures"].clone()), (StatusCode::OK, json!({})));
    let master_pub = master.public_key().to_base64();
    let ssk_pub = ssk.public_key().to_base64();

    // Alice (on A) queries bob's keys: B answers through A.
    let query = |devices: Value| {
        let body = json!({ "device_keys": { &bid: devices }, "timeout": 5000 });
        let (a, alice) = (&a, &alice);
        async move { a.post(alice, "/_matrix/client/v3/keys/query", body).await }
    };
    let (st, v) = query(json!([])).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["failures"], json!({}));
    let d = &v["device_keys"][&bid][&dev];
    assert_eq!(d["keys"], bob.device_keys()["keys"]);
    assert!(
        verifies(
            d,
            &bid,
            &bob.key_id(),
            &bob.account.ed25519_key().to_base64()
        ),
        "{d}"
    );
    assert!(
        verifies(d, &bid, &format!("ed25519:{ssk_pub}"), &ssk_pub),
        "{d}"
    );
    assert_eq!(d["unsigned"]["device_display_name"], "Téléphone de Bob");
    assert_eq!(v["master_keys"][&bid]["keys"], cross["master_key"]["keys"]);
    let ssk_obj = &v["self_signing_keys"][&bid];
    assert_eq!(ssk_obj["keys"], cross["self_signing_key"]["keys"]);
    assert!(verifies(
        ssk_obj,
        &bid,
        &format!("ed25519:{master_pub}"),
        &master_pub
    ));
    assert!(v["user_signing_keys"].get(&bid).is_none(), "{v}");
    // A device filter applies to remote users too.
    let (_, v) = query(json!(["NOSUCHDEVICE"])).await;
    assert_eq!(v["device_keys"][&bid], json!({}));

    // B's device list over federation, as another server sees it.
    let list = a
        .services()
        .federation()
        .federation_request(
            &server(&b_name),
            Method::GET,
            &format!("/_matrix/federation/v1/user/devices/{}", enc(&bid)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(list["user_id"], bid);
    assert!(list["stream_id"].as_i64().unwrap() > 0, "{list}");
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["devices"][0]["device_id"], dev);
    assert_eq!(
        list["devices"][0]["device_display_name"],
        "Téléphone de Bob"
    );
    assert_eq!(
        list["devices"][0]["keys"]["keys"],
        bob.device_keys()["keys"]
    );
    assert_eq!(list["master_key"]["keys"], cross["master_key"]["keys"]);
    assert_eq!(
        list["self_signing_key"]["keys"],
        cross["self_signing_key"]["keys"]
    );
    assert!(list.get("user_signing_key").is_none());
    let err = a
        .services()
        .federation()
        .federation_request(
            &server(&b_name),
            Method::GET,
            &format!(
                "/_matrix/federation/v1/user/devices/{}",
                enc(&alice.user_id)
            ),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_REQUEST);

    // Bob's one-time key is claimed through A exactly once.
    let claim = || {
        let body = json!({ "one_time_keys": { &bid: { &dev: "signed_curve25519" } } });
        let (a, alice) = (&a, &alice);
        async move { a.post(alice, "/_matrix/client/v3/keys/claim", body).await }
    };
    let (st, v) = claim().await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["failures"], json!({}));
    let keys = v["one_time_keys"][&bid][&dev].as_object().unwrap().clone();
    assert_eq!(keys.len(), 1, "{v}");
    let (id, key) = keys.iter().next().unwrap();
    assert!(id.starts_with("signed_curve25519:"));
    assert!(verifies(
        key,
        &bid,
        &bob.key_id(),
        &bob.account.ed25519_key().to_base64()
    ));
    let (st, v) = claim().await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["one_time_keys"], json!({}), "the key went once: {v}");

    // B goes away: the keys A cached still answer; once forgotten, B is a failure.
    bs.stop().await;
    let (st, v) = query(json!([])).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["failures"], json!({}));
    assert_eq!(
        v["device_keys"][&bid][&dev]["keys"],
        bob.device_keys()["keys"]
    );
    assert_eq!(v["master_keys"][&bid]["keys"], cross["master_key"]["keys"]);
    a.services()
        .e2ee()
        .invalidate_remote_device_cache(&ruma::UserId::parse(&bid).unwrap())
        .await
        .unwrap();
    let (st, v) = query(json!([])).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["failures"][&b_name].is_object(), "{v}");
    assert!(v["device_keys"].get(&bid).is_none(), "{v}");
    let (st, v) = claim().await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["failures"][&b_name].is_object(), "{v}");
    a.stop().await;
}

async fn directory(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |_| {}).await;
    let b_name = bs.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = bs
        .create_room(
            &bob,
            json!({
                "preset": "public_chat",
                "visibility": "public",
                "name": "Salle publique",
                "topic": "Annonces",
                "room_alias_name": "annonces",
            }),
        )
        .await;
    let other = bs
        .create_room(
            &bob,
            json!({ "preset": "public_chat", "visibility": "public", "name": "Autre" }),
        )
        .await;
    // A private room is not listed.
    bs.create_room(&bob, json!({ "name": "Privée" })).await;

    let (st, v) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&b_name)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert!(ids.contains(&room.as_str()) && ids.contains(&other.as_str()));
    let entry = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == room)
        .unwrap();
    assert_eq!(entry["name"], "Salle publique");
    assert_eq!(entry["topic"], "Annonces");
    assert_eq!(entry["canonical_alias"], format!("#annonces:{b_name}"));
    assert_eq!(entry["num_joined_members"], 1);
    // Pages, through B's tokens.
    let (_, p1) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/publicRooms?server={}&limit=1",
                enc(&b_name)
            ),
        )
        .await;
    assert_eq!(p1["chunk"].as_array().unwrap().len(), 1);
    let next = p1["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, p2) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/publicRooms?server={}&limit=1&since={}",
                enc(&b_name),
                enc(&next)
            ),
        )
        .await;
    assert_eq!(p2["chunk"].as_array().unwrap().len(), 1);
    assert_ne!(p1["chunk"][0]["room_id"], p2["chunk"][0]["room_id"]);
    // A search term goes to B (POST).
    let (st, v) = a
        .post(
            &alice,
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&b_name)),
            json!({ "filter": { "generic_search_term": "publique" } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(v["chunk"][0]["room_id"], room);
    let (_, v) = a
        .post(
            &alice,
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&b_name)),
            json!({ "filter": { "generic_search_term": "introuvable" } }),
        )
        .await;
    assert_eq!(v["chunk"], json!([]));
    let (st, _) = a
        .get(
            &alice,
            "/_matrix/client/v3/publicRooms?server=not%20a%20server",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // B's alias resolves through A.
    let (st, v) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc(&format!("#annonces:{b_name}"))
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["room_id"], room);
    assert_eq!(v["servers"], json!([b_name]));
    let (st, v) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc(&format!("#inconnu:{b_name}"))
            ),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );

    // B unreachable: the directory and the alias fail with 502, not 404.
    bs.stop().await;
    let (st, _) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&b_name)),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    let (st, _) = a
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc(&format!("#annonces:{b_name}"))
            ),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    a.stop().await;
}

async fn refusals(b: Backend) {
    let (a, bs, _cert) = two_servers(b, |c| {
        c.federation.public_rooms_over_federation = false;
        c.federation.device_names_over_federation = false;
    })
    .await;
    let b_name = bs.name();
    let alice = a.register("alice").await;
    let mut bob = Device::new(bs.register("bob").await);
    bob.upload(&bs, 1).await;
    let bid = enc(&bob.user.user_id);

    // Unsigned requests to the federation endpoints: 401.
    for (method, path, body) in [
        (
            Method::GET,
            "/_matrix/federation/v1/media/download/abc".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/_matrix/federation/v1/media/thumbnail/abc?width=32&height=32".to_owned(),
            None,
        ),
        (
            Method::GET,
            format!("/_matrix/federation/v1/user/devices/{bid}"),
            None,
        ),
        (
            Method::POST,
            "/_matrix/federation/v1/user/keys/query".to_owned(),
            Some(json!({ "device_keys": {} })),
        ),
        (
            Method::POST,
            "/_matrix/federation/v1/user/keys/claim".to_owned(),
            Some(json!({ "one_time_keys": {} })),
        ),
        (
            Method::GET,
            "/_matrix/federation/v1/publicRooms".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/_matrix/federation/v1/publicRooms".to_owned(),
            Some(json!({})),
        ),
    ] {
        let (st, v) = bs.call(method, &path, None, body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(v["errcode"], "M_UNAUTHORIZED", "{path}");
    }

    // B does not share its directory: 403 through A.
    let (st, v) = a
        .get(
            &alice,
            &format!("/_matrix/client/v3/publicRooms?server={}", enc(&b_name)),
        )
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    // Nor device names.
    let (_, v) = bs
        .put(
            &bob.user,
            &format!("/_matrix/client/v3/devices/{}", bob.user.device_id),
            json!({ "display_name": "secret" }),
        )
        .await;
    assert_eq!(v, json!({}));
    let (st, v) = a
        .post(
            &alice,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { &bob.user.user_id: [] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let d = &v["device_keys"][&bob.user.user_id][&bob.user.device_id];
    assert_eq!(d["keys"], bob.device_keys()["keys"], "{v}");
    assert!(d["unsigned"].get("device_display_name").is_none(), "{d}");
    // A remote user of a server that does not exist: a failure, not an error.
    let (st, v) = a
        .post(
            &alice,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { "@x:localhost:1": [] }, "timeout": 3000 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["failures"]["localhost:1"].is_object(), "{v}");
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(media, media_location, keys, directory, refusals);
