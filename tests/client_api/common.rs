//! Test harness: a real Palabre on an ephemeral port, on SQLite or on a fresh PostgreSQL
//! database in the throwaway cluster started by scripts/test.sh (PALABRE_TEST_PG).
#![allow(dead_code)]

use std::time::Duration;

use palabre::{
    config::{Config, PasswordHashing, RateLimit, RegistrationMode},
    server::Running,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let lots = RateLimit {
        per_second: 10_000.0,
        burst: 10_000.0,
    };
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        registration: RegistrationMode::Open,
        password_hashing: PasswordHashing {
            memory_kib: 64,
            iterations: 1,
        },
        rate_limits: palabre::config::RateLimits {
            login: lots,
            login_failures: lots,
            registration: lots,
            message: lots,
            search: lots,
            email_invite: lots,
        },
        // Every test server and fake peer is on loopback, which outbound requests never reach
        // by default; the SSRF tests clear this.
        outbound: palabre::config::OutboundConfig {
            ip_range_allowlist: vec!["127.0.0.0/8".into(), "::1".into()],
            ..Default::default()
        },
        ..Config::default()
    }
}

pub async fn database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/palabre.db", dir.display()),
        Backend::Postgres => {
            let base = std::env::var("PALABRE_TEST_PG")
                .expect("PALABRE_TEST_PG is not set: run the suite with scripts/test.sh, which starts PostgreSQL");
            let name = format!("t_{}", palabre::util::random_string(12).to_lowercase());
            let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
                .await
                .expect("connect to test cluster");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create database");
            format!("{base}/{name}")
        }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(dir.path());
        cfg.database_url = Some(database_url(backend, dir.path()).await);
        tweak(&mut cfg);
        let running = palabre::server::start(cfg).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn services(&self) -> &palabre::services::Services {
        &self.running.as_ref().expect("running").services
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Like `call`, but a failed connection (a killed server) is None instead of a panic.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status();
        let text = resp.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A raw request; returns status and JSON body (Null when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A server admin made as an operator would (`palabre user create --admin`), logged in.
    pub async fn admin_user(&self, name: &str) -> User {
        self.services()
            .accounts()
            .create_user_cli(name, "correct horse 1", true)
            .await
            .expect("admin created");
        let (st, v) = self.login(password(name, "correct horse 1")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        User {
            user_id: v["user_id"].as_str().unwrap().to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Registers a user (dummy auth) and returns a logged-in client.
    pub async fn register(&self, name: &str) -> User {
        let (st, v) = self
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(json!({ "username": name, "password": "correct horse 1", "auth": { "type": "m.login.dummy" } })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "register {name}: {v}");
        User {
            user_id: v["user_id"].as_str().unwrap().to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_str().unwrap().to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub token: String,
    pub device_id: String,
}

/// The `m.login.password` auth object for a user id or localpart.
pub fn password(user: &str, pw: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": pw})
}

/// `base` with the fields of `extra` added.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl TestServer {
    /// `POST /login` with a body.
    pub async fn login(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/_matrix/client/v3/login", None, Some(body))
            .await
    }

    pub async fn get(&self, u: &User, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(&u.token), None).await
    }
    pub async fn post(&self, u: &User, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&u.token), Some(body))
            .await
    }
    pub async fn put(&self, u: &User, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(&u.token), Some(body))
            .await
    }

    pub async fn create_room(&self, u: &User, body: Value) -> String {
        let (st, v) = self.post(u, "/_matrix/client/v3/createRoom", body).await;
        assert_eq!(st, StatusCode::OK, "createRoom: {v}");
        v["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn send_text(&self, u: &User, room: &str, txn: &str, body: &str) -> String {
        let (st, v) = self
            .put(
                u,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                    enc(room),
                    enc(txn)
                ),
                json!({ "msgtype": "m.text", "body": body }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "send: {v}");
        v["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn join(&self, u: &User, room: &str) {
        let (st, v) = self
            .post(
                u,
                &format!("/_matrix/client/v3/join/{}", enc(room)),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "join: {v}");
    }

    pub async fn invite(&self, u: &User, room: &str, target: &User) {
        let (st, v) = self
            .post(
                u,
                &format!("/_matrix/client/v3/rooms/{}/invite", enc(room)),
                json!({ "user_id": target.user_id }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "invite: {v}");
    }

    pub async fn sync(&self, u: &User, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        let (st, v) = self.get(u, &path).await;
        assert_eq!(st, StatusCode::OK, "sync: {v}");
        v
    }
}

/// Bodies of the m.room.message events of a room's timeline in a sync response.
pub fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met in 5 s");
}

/// A self-signed certificate for `localhost`, trusted by the servers that federate in a test.
pub struct FedCert {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn fed_cert() -> FedCert {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    FedCert {
        cert: cert_path,
        key: key_path,
        _dir: dir,
    }
}

/// A loopback port free right now, for a server to bind next. Picked at random BELOW the
/// kernel's ephemeral range (32768–60999 by default): a port the kernel hands out (`bind :0`)
/// can be taken by any test's outgoing connection between now and the server's bind, which made
/// servers fail with "Address already in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Makes a config the server `localhost:<port>`, listening with TLS on that port and trusting
/// the test certificate for federation.
pub fn federating(c: &mut Config, cert: &FedCert, port: u16) {
    c.server_name = format!("localhost:{port}");
    c.tls = Some(palabre::config::TlsConfig {
        listen: format!("127.0.0.1:{port}"),
        certificate: cert.cert.clone(),
        private_key: cert.key.clone(),
    });
    c.federation.extra_ca_file = Some(cert.cert.clone());
}

/// Two servers named `localhost:<tls port>`, sharing a self-signed certificate that each trusts.
pub async fn two_servers(
    b: Backend,
    tweak_b: impl FnOnce(&mut Config),
) -> (TestServer, TestServer, FedCert) {
    two_servers_with(b, |_| {}, tweak_b).await
}

pub async fn two_servers_with(
    b: Backend,
    tweak_a: impl FnOnce(&mut Config),
    tweak_b: impl FnOnce(&mut Config),
) -> (TestServer, TestServer, FedCert) {
    let cert = fed_cert();
    let (pa, pb) = (free_port(), free_port());
    let a = TestServer::start_with(b, |c| {
        federating(c, &cert, pa);
        tweak_a(c);
    })
    .await;
    let bsrv = TestServer::start_with(b, |c| {
        federating(c, &cert, pb);
        tweak_b(c);
    })
    .await;
    (a, bsrv, cert)
}

/// `n` federating servers named `localhost:<tls port>`; `tweak(i, names, config)` sees every
/// server's name before any starts (for configs that name each other, such as `[tchap]` rules).
pub async fn servers_n(
    b: Backend,
    n: usize,
    tweak: impl Fn(usize, &[String], &mut Config),
) -> (Vec<TestServer>, FedCert) {
    let cert = fed_cert();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let names: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    let mut servers = Vec::with_capacity(n);
    for (i, port) in ports.iter().enumerate() {
        servers.push(
            TestServer::start_with(b, |c| {
                federating(c, &cert, *port);
                tweak(i, &names, c);
            })
            .await,
        );
    }
    (servers, cert)
}

impl TestServer {
    /// This server's name.
    pub fn name(&self) -> String {
        self.services().server_name.to_string()
    }
}

/// Defines a test for each storage backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A loopback port whose every connection is counted and closed at once.
pub fn tripwire() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, hits)
}

/// A fake federation peer (TLS, the test certificate) answering every request with `app`.
pub async fn fake_peer(cert: &FedCert, app: axum::Router) -> u16 {
    let port = free_port();
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
    port
}
