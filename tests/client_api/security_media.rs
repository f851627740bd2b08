//! Security review mends, media: thumbnail generation is bounded (a few decodes at once) and
//! de-duplicated (concurrent requests for one thumbnail share one decode), for local media and
//! for remote media generated from a cached original.

use futures::future::join_all;
use reqwest::StatusCode;

use crate::{
    common::*,
    media::{fetch, image_bytes, mxc_path, upload},
};

/// A PNG large enough that its decode takes a while (so concurrent requests overlap it).
fn big_png(seed: u32) -> Vec<u8> {
    image_bytes(1200 + seed, 900, image::ImageFormat::Png)
}

/// `n` concurrent GETs of `path` with `token`; every answer must be 200.
async fn concurrent(s: &TestServer, token: &str, paths: &[String]) -> Vec<Vec<u8>> {
    let answers = join_all(paths.iter().map(|p| fetch(s, Some(token), p))).await;
    answers
        .into_iter()
        .zip(paths)
        .map(|(f, p)| {
            assert_eq!(
                f.status,
                StatusCode::OK,
                "{p}: {}",
                String::from_utf8_lossy(&f.bytes)
            );
            f.bytes
        })
        .collect()
}

async fn one_decode_per_thumbnail(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let (st, v) = upload(&s, &u, "image/png", None, big_png(0)).await;
    assert_eq!(st, StatusCode::OK);
    let id = mxc_path(&v);
    let before = s.services().thumbnailer.decodes();
    let path = format!("/_matrix/client/v1/media/thumbnail/{id}?width=320&height=240&method=scale");
    let bodies = concurrent(&s, &u.token, &vec![path.clone(); 8]).await;
    assert!(bodies.iter().all(|b| *b == bodies[0]), "identical bytes");
    let img = image::load_from_memory(&bodies[0]).unwrap();
    assert_eq!((img.width(), img.height()), (320, 240));
    assert_eq!(
        s.services().thumbnailer.decodes() - before,
        1,
        "eight concurrent requests, one decode"
    );
    // Cached now: no new decode; another size is its own (single) decode.
    assert_eq!(concurrent(&s, &u.token, &[path]).await[0], bodies[0]);
    let crop = format!("/_matrix/client/v1/media/thumbnail/{id}?width=96&height=96&method=crop");
    let crops = concurrent(&s, &u.token, &vec![crop; 6]).await;
    assert!(crops.iter().all(|b| *b == crops[0]));
    assert_eq!(s.services().thumbnailer.decodes() - before, 2);
    s.stop().await;
}

async fn decodes_are_bounded(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let mut paths = vec![];
    for i in 0..10 {
        let (st, v) = upload(&s, &u, "image/png", None, big_png(i)).await;
        assert_eq!(st, StatusCode::OK);
        paths.push(format!(
            "/_matrix/client/v1/media/thumbnail/{}?width=640&height=480&method=scale",
            mxc_path(&v)
        ));
    }
    let t = &s.services().thumbnailer;
    let before = t.decodes();
    concurrent(&s, &u.token, &paths).await;
    assert_eq!(t.decodes() - before, 10, "one decode per media");
    let limit = t.limit();
    assert!((1..=4).contains(&limit), "a small bound: {limit}");
    assert!(
        (1..=limit).contains(&t.peak_concurrent()),
        "at most {limit} decodes at once, saw {}",
        t.peak_concurrent()
    );
    s.stop().await;
}

/// A remote media whose original is cached here: its thumbnails are made here, once.
async fn remote_thumbnail_from_cached_original(b: Backend) {
    let (a, bsrv, _cert) = two_servers(b, |_| {}).await;
    let alice = a.register("alice").await;
    let bob = bsrv.register("bob").await;
    let (st, v) = upload(&bsrv, &bob, "image/png", None, big_png(3)).await;
    assert_eq!(st, StatusCode::OK);
    let id = mxc_path(&v);
    let f = fetch(
        &a,
        Some(&alice.token),
        &format!("/_matrix/client/v1/media/download/{id}"),
    )
    .await;
    assert_eq!(f.status, StatusCode::OK, "the original is cached on A");
    let before = a.services().thumbnailer.decodes();
    let path = format!("/_matrix/client/v1/media/thumbnail/{id}?width=96&height=96&method=crop");
    let bodies = concurrent(&a, &alice.token, &vec![path; 8]).await;
    assert!(bodies.iter().all(|b| *b == bodies[0]), "identical bytes");
    assert_eq!(a.services().thumbnailer.decodes() - before, 1);
    a.stop().await;
    bsrv.stop().await;
}

crate::both_backends!(
    one_decode_per_thumbnail,
    decodes_are_bounded,
    remote_thumbnail_from_cached_original
);
