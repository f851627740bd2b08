//! Media repository over HTTP: upload/download round trips, safe serving headers, limits,
//! asynchronous uploads, thumbnails, decompression bombs, streaming of a 100 MB file.

use std::io::Cursor;

use futures::StreamExt;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

pub(crate) struct Fetched {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

pub(crate) async fn fetch(s: &TestServer, token: Option<&str>, path: &str) -> Fetched {
    let mut req = s.http.get(format!("{}{}", s.base, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    Fetched {
        status: resp.status(),
        headers: resp.headers().clone(),
        bytes: resp.bytes().await.unwrap().to_vec(),
    }
}

pub(crate) async fn upload(
    s: &TestServer,
    u: &User,
    content_type: &str,
    filename: Option<&str>,
    data: Vec<u8>,
) -> (StatusCode, Value) {
    let mut url = format!("{}/_matrix/media/v3/upload", s.base);
    if let Some(f) = filename {
        url.push_str(&format!("?filename={}", enc(f)));
    }
    let resp = s
        .http
        .post(url)
        .bearer_auth(&u.token)
        .header(header::CONTENT_TYPE, content_type)
        .body(data)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

/// `server/id` of an mxc URI.
pub(crate) fn mxc_path(v: &Value) -> String {
    v["content_uri"]
        .as_str()
        .expect("content_uri")
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned()
}

pub(crate) fn image_bytes(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(vec![]);
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

async fn round_trip_and_headers(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (st, v) = upload(
        &s,
        &u,
        "application/octet-stream",
        Some("report final.bin"),
        data.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = mxc_path(&v);
    assert!(v["content_uri"]
        .as_str()
        .unwrap()
        .starts_with("mxc://localhost/"));

    let f = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{id}"),
    )
    .await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.bytes, data, "identical bytes");
    assert_eq!(f.header("content-type"), "application/octet-stream");
    assert!(
        f.header("content-disposition").starts_with("attachment"),
        "{}",
        f.header("content-disposition")
    );
    assert!(f
        .header("content-disposition")
        .contains("report%20final.bin"));
    assert_eq!(f.header("x-content-type-options"), "nosniff");
    assert!(f.header("content-security-policy").starts_with("sandbox"));
    assert_eq!(f.header("cross-origin-resource-policy"), "cross-origin");

    let named = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{id}/other.txt"),
    )
    .await;
    assert!(named.header("content-disposition").contains("other.txt"));

    // Authentication is required; the legacy endpoint does not serve new media.
    let f = fetch(&s, None, &format!("/_matrix/client/v1/media/download/{id}")).await;
    assert_eq!(f.status, StatusCode::UNAUTHORIZED);
    let f = fetch(&s, None, &format!("/_matrix/media/v3/download/{id}")).await;
    assert_eq!(f.status, StatusCode::NOT_FOUND);
    let f = fetch(
        &s,
        Some(&u.token),
        "/_matrix/client/v1/media/download/localhost/nope",
    )
    .await;
    assert_eq!(
        (f.status, f.json()["errcode"].clone()),
        (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
    );

    // An HTML upload is an attachment under a sandbox CSP; an image is inline.
    let (_, v) = upload(
        &s,
        &u,
        "text/html",
        None,
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    let f = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{}", mxc_path(&v)),
    )
    .await;
    assert!(f.header("content-disposition").starts_with("attachment"));
    assert!(f.header("content-security-policy").contains("sandbox"));
    assert!(f
        .header("content-security-policy")
        .contains("script-src 'none'"));
    let png = image_bytes(8, 8, image::ImageFormat::Png);
    let (_, v) = upload(&s, &u, "image/png", None, png).await;
    let f = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{}", mxc_path(&v)),
    )
    .await;
    assert!(f.header("content-disposition").starts_with("inline"));

    // Identical content is stored once.
    let (_, again) = upload(&s, &u, "application/octet-stream", None, data.clone()).await;
    assert_ne!(mxc_path(&again), id);
    let files = walk(&s._dir.path().join("media"));
    let copies = files
        .iter()
        .filter(|p| std::fs::read(p).map(|b| b == data).unwrap_or(false))
        .count();
    assert_eq!(copies, 1);

    let f = fetch(&s, Some(&u.token), "/_matrix/client/v1/media/config").await;
    assert_eq!(f.json()["m.upload.size"], 100 * 1024 * 1024);
    s.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn limits_and_quota(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.media.max_upload_bytes = 1000;
        c.media.quota_bytes_per_user = 1500;
    })
    .await;
    let u = s.register("alice").await;
    let (st, v) = upload(&s, &u, "text/plain", None, vec![b'a'; 2000]).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("M_TOO_LARGE"))
    );
    // Without a Content-Length (streamed), the limit holds while reading.
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 500])));
    let resp = s
        .http
        .post(format!("{}/_matrix/media/v3/upload", s.base))
        .bearer_auth(&u.token)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        walk(&s._dir.path().join("media/tmp")).is_empty(),
        "no partial file left"
    );

    let (st, _) = upload(&s, &u, "text/plain", None, vec![b'c'; 1000]).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = upload(&s, &u, "text/plain", None, vec![b'd'; 1000]).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::FORBIDDEN, json!("M_RESOURCE_LIMIT_EXCEEDED"))
    );
    let (_, v) = s.get(&u, "/_matrix/client/v1/media/config").await;
    assert_eq!(v["m.upload.size"], 1000);
    s.stop().await;
}

async fn async_upload(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let other = s.register("bob").await;
    let (st, v) = s.post(&u, "/_matrix/media/v1/create", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["unused_expires_at"].as_i64().unwrap() > 0);
    let id = mxc_path(&v);
    let f = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{id}?timeout_ms=100"),
    )
    .await;
    assert_eq!(
        (f.status, f.json()["errcode"].clone()),
        (StatusCode::GATEWAY_TIMEOUT, json!("M_NOT_YET_UPLOADED"))
    );
    let put = |who: &User, body: &'static [u8]| {
        let req = s
            .http
            .put(format!(
                "{}/_matrix/media/v3/upload/{id}?filename=a.txt",
                s.base
            ))
            .bearer_auth(&who.token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        put(&other, b"intruder").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(put(&u, b"hello").await.status(), StatusCode::OK);
    let resp = put(&u, b"again").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["errcode"],
        "M_CANNOT_OVERWRITE_MEDIA"
    );
    let f = fetch(
        &s,
        Some(&other.token),
        &format!("/_matrix/client/v1/media/download/{id}"),
    )
    .await;
    assert_eq!(f.bytes, b"hello");
    assert!(f.header("content-disposition").contains("a.txt"));
    s.stop().await;
}

/// A PNG whose header announces 60000 x 60000 pixels (3.6 gigapixels) with almost no data.
fn bomb_png() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = vec![];
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

async fn thumbnails(b: Backend) {
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let thumb = |id: String, q: &str| {
        let path = format!("/_matrix/client/v1/media/thumbnail/{id}?{q}");
        let s = &s;
        let token = u.token.clone();
        async move { fetch(s, Some(&token), &path).await }
    };
    for (format, ct) in [
        (image::ImageFormat::Png, "image/png"),
        (image::ImageFormat::Jpeg, "image/jpeg"),
        (image::ImageFormat::Gif, "image/gif"),
        (image::ImageFormat::WebP, "image/webp"),
    ] {
        let (st, v) = upload(&s, &u, ct, None, image_bytes(1000, 500, format)).await;
        assert_eq!(st, StatusCode::OK);
        let id = mxc_path(&v);
        let f = thumb(id.clone(), "width=96&height=96&method=crop").await;
        assert_eq!(f.status, StatusCode::OK, "{ct}: {:?}", f.json());
        let img = image::load_from_memory(&f.bytes).unwrap();
        assert_eq!((img.width(), img.height()), (96, 96), "{ct} crop");
        assert!(f.header("content-type").starts_with("image/"));
        let f = thumb(
            id.clone(),
            "width=320&height=240&method=scale&animated=true",
        )
        .await;
        let img = image::load_from_memory(&f.bytes).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (320, 160),
            "{ct} scale keeps the aspect ratio"
        );
        // Cached: the same bytes again.
        let again = thumb(id.clone(), "width=320&height=240&method=scale").await;
        assert_eq!(again.bytes, f.bytes);
    }
    // Not an image; a bad method; no size.
    let (_, v) = upload(&s, &u, "text/plain", None, b"just text".to_vec()).await;
    let f = thumb(mxc_path(&v), "width=96&height=96").await;
    assert_eq!(f.status, StatusCode::BAD_REQUEST);
    let (_, v) = upload(
        &s,
        &u,
        "image/png",
        None,
        image_bytes(50, 50, image::ImageFormat::Png),
    )
    .await;
    assert_eq!(
        thumb(mxc_path(&v), "width=96&height=96&method=zoom")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        thumb(mxc_path(&v), "method=crop").await.status,
        StatusCode::BAD_REQUEST
    );
    // A decompression bomb is refused from its header, never decoded.
    let (st, v) = upload(&s, &u, "image/png", None, bomb_png()).await;
    assert_eq!(st, StatusCode::OK);
    let f = thumb(mxc_path(&v), "width=96&height=96&method=crop").await;
    assert_eq!(
        (f.status, f.json()["errcode"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("M_TOO_LARGE"))
    );
    s.stop().await;
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 100 MB up and down, streamed on both sides: the process's peak RSS (server and client share
/// it here) grows by less than 30 MB.
async fn hundred_megabytes_streamed(b: Backend) {
    const SIZE: usize = 100 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let s = TestServer::start(b).await;
    let u = s.register("alice").await;
    let chunk = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 31 + j) % 253) as u8).collect() };
    let mut expected = Sha256::new();
    for i in 0..SIZE / CHUNK {
        expected.update(chunk(i));
    }
    let expected = expected.finalize();
    let before = peak_rss_kb();

    let body =
        futures::stream::iter((0..SIZE / CHUNK).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let resp = s
        .http
        .post(format!("{}/_matrix/media/v3/upload", s.base))
        .bearer_auth(&u.token)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, SIZE)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = mxc_path(&resp.json().await.unwrap());

    let resp = s
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{id}", s.base))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut got = Sha256::new();
    let mut n = 0;
    let mut stream = resp.bytes_stream();
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len();
        got.update(&c);
    }
    assert_eq!(n, SIZE);
    assert_eq!(got.finalize(), expected, "identical bytes");
    let grown_mb = (peak_rss_kb() - before) / 1024;
    assert!(grown_mb < 30, "peak RSS grew by {grown_mb} MB");
    s.stop().await;
}

/// A small web site on loopback for the previewer to fetch.
async fn site() -> (String, tokio::task::JoinHandle<()>) {
    use axum::{response::IntoResponse, routing::get, Router};
    let png = image_bytes(40, 20, image::ImageFormat::Png);
    let app = Router::new()
        .route(
            "/page",
            get(|| async {
                (
                    [("content-type", "text/html; charset=utf-8")],
                    "<html><head><title>Titre</title><meta property=\"og:description\" content=\"Un r&eacute;sum&amp;\">\
                     <meta property=\"og:image\" content=\"/img.png\"></head><body>x</body></html>",
                )
            }),
        )
        .route(
            "/img.png",
            get(move || {
                let png = png.clone();
                async move { ([("content-type", "image/png")], png).into_response() }
            }),
        )
        .route("/moved", get(|| async { axum::response::Redirect::temporary("/page") }))
        .route(
            "/big",
            get(|| async { ([("content-type", "text/html")], "x".repeat(5000)) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("127.0.0.1:{}", addr.port()), task)
}

async fn url_previews(b: Backend) {
    let off = TestServer::start(b).await;
    let u = off.register("alice").await;
    let (st, v) = off
        .get(
            &u,
            "/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.org",
        )
        .await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::NOT_FOUND, json!("M_UNRECOGNIZED"))
    );
    off.stop().await;

    let (host, task) = site().await;
    let s = TestServer::start_with(b, |c| {
        c.media.url_preview.enabled = true;
        c.media.url_preview.ip_allow_list = vec!["127.0.0.1/32".into()];
        c.media.url_preview.max_bytes = 4000;
    })
    .await;
    let u = s.register("alice").await;
    let preview = |url: String| {
        let path = format!("/_matrix/client/v1/media/preview_url?url={}", enc(&url));
        let s = &s;
        let u = u.clone();
        async move { s.get(&u, &path).await }
    };
    let (st, og) = preview(format!("http://{host}/page")).await;
    assert_eq!(st, StatusCode::OK, "{og}");
    assert_eq!(og["og:title"], "Titre");
    assert_eq!(og["og:image:width"], 40);
    let img = og["og:image"]
        .as_str()
        .unwrap()
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned();
    let f = fetch(
        &s,
        Some(&u.token),
        &format!("/_matrix/client/v1/media/download/{img}"),
    )
    .await;
    assert_eq!(f.bytes, image_bytes(40, 20, image::ImageFormat::Png));
    // Redirects are followed; size is bounded; other loopback addresses and schemes are refused.
    let (st, og) = preview(format!("http://{host}/moved")).await;
    assert_eq!(
        (st, og["og:title"].clone()),
        (StatusCode::OK, json!("Titre"))
    );
    let (st, v) = preview(format!("http://{host}/big")).await;
    assert_eq!(
        (st, v["errcode"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("M_TOO_LARGE"))
    );
    let port = host.split(':').nth(1).unwrap();
    let (st, _) = preview(format!("http://127.0.0.2:{port}/page")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = preview(format!("http://[::1]:{port}/page")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = preview("ftp://example.org/x".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    task.abort();
    s.stop().await;
}

crate::both_backends!(
    url_previews,
    round_trip_and_headers,
    limits_and_quota,
    async_upload,
    thumbnails,
    hundred_megabytes_streamed
);
