//! Several processes on one database: SQLite refuses a second serving process; on PostgreSQL
//! the nodes share streams, wake-ups, room ordering and caches (docs/high-availability.md).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::{
    common::{enc, free_port, timeline_bodies, Backend, TestServer, User},
    crash::{client_of, spawn, Proc},
};

/// A second `palabre serve` on the SQLite database of a running one exits at once with a
/// message that says why; once the first is killed with SIGKILL, the lock is gone with it.
#[tokio::test]
async fn second_sqlite_process_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(Backend::Sqlite, dir.path()).await;
    let first = spawn(dir.path(), &db, free_port()).await;
    let child = Command::new(env!("CARGO_BIN_EXE_palabre"))
        .arg("serve")
        .env("PALABRE_DATA_DIR", dir.path())
        .env("PALABRE_DATABASE_URL", &db)
        .env("PALABRE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PALABRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Proc)
        .expect("palabre runs");
    let mut child = child;
    assert!(
        exits_within(&mut child, Duration::from_secs(10)).await,
        "a second process is serving the same SQLite database"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    let second = child.0.wait().unwrap();
    assert!(!second.success(), "a second process started");
    assert!(
        err.contains("another Palabre process is already serving the SQLite database"),
        "{err}"
    );
    // The operator's command-line tools still work beside the server.
    let created = Command::new(env!("CARGO_BIN_EXE_palabre"))
        .args(["user", "create", "ops", "--password", "correct horse 1"])
        .env("PALABRE_DATA_DIR", dir.path())
        .env("PALABRE_DATABASE_URL", &db)
        .env("PALABRE_LOG", "warn")
        .output()
        .expect("palabre runs");
    assert!(created.status.success(), "{created:?}");

    let mut first = first;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let port = free_port();
    let _again = spawn(dir.path(), &db, port).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// `n` nodes of one server on one PostgreSQL database (and one data directory: the signing key
/// and the media are shared), each a real `palabre serve`.
async fn cluster(n: usize) -> (tempfile::TempDir, String, Vec<(Proc, TestServer)>) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(Backend::Postgres, dir.path()).await;
    let mut nodes = vec![];
    for _ in 0..n {
        let port = free_port();
        let p = spawn(dir.path(), &db, port).await;
        nodes.push((p, client_of(port)));
    }
    (dir, db, nodes)
}

const ALL_TIMELINE: &str = r#"{"room":{"timeline":{"limit":500}}}"#;

/// An incremental sync with a filter that keeps every timeline event.
async fn sync_all(s: &TestServer, u: &User, since: &str, timeout_ms: u64) -> Value {
    let path = format!(
        "/_matrix/client/v3/sync?timeout={timeout_ms}&since={}&filter={}",
        enc(since),
        enc(ALL_TIMELINE)
    );
    let (st, v) = s.get(u, &path).await;
    assert_eq!(st, StatusCode::OK, "sync: {v}");
    v
}

/// Users on different nodes chat; a message sent through node 1 ends the long-polls held on
/// nodes 2 and 3; a client that goes from node to node between syncs gets every message
/// exactly once; a logout on node 1 is refused on node 2.
#[tokio::test]
async fn nodes_share_streams_wake_ups_and_tokens() {
    let (_dir, _db, nodes) = cluster(3).await;
    let (n1, n2, n3) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);
    let alice = n1.register("alice").await;
    let bob = n2.register("bob").await;
    let room = n1
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    n2.join(&bob, &room).await;
    // Bob's second device, logged in on node 3.
    let (st, v) = n3
        .login(crate::common::password("bob", "correct horse 1"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bob3 = User {
        user_id: bob.user_id.clone(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    };

    // Long-polls on nodes 2 and 3, then a message through node 1.
    let since2 = n2.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let since3 = n3.sync(&bob3, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll2 = sync_all(n2, &bob, &since2, 20_000);
    let poll3 = sync_all(n3, &bob3, &since3, 20_000);
    let send = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        n1.send_text(&alice, &room, "w1", "wake up").await;
        t
    };
    let (r2, r3, sent) = tokio::join!(
        async { (poll2.await, Instant::now()) },
        async { (poll3.await, Instant::now()) },
        send
    );
    for (r, node) in [(&r2, 2), (&r3, 3)] {
        assert_eq!(
            timeline_bodies(&r.0, &room),
            vec!["wake up".to_owned()],
            "node {node}: {}",
            r.0
        );
        let waited = r.1.duration_since(sent);
        assert!(
            waited < Duration::from_secs(5),
            "node {node} woke after {waited:?}"
        );
        eprintln!("cross-node wake-up, node {node}: {waited:?} after the send began");
    }

    // Messages through every node while Bob's client hops from node to node.
    let mut since = r2.0["next_batch"].as_str().unwrap().to_owned();
    let senders = async {
        for i in 0..30 {
            let via = &nodes[i % 3].1;
            via.send_text(&alice, &room, &format!("m{i}"), &format!("m{i}"))
                .await;
        }
    };
    let reader = async {
        let mut seen: Vec<String> = vec![];
        let mut hop = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 30 && Instant::now() < deadline {
            let via = &nodes[hop % 3].1;
            hop += 1;
            let v = sync_all(via, &bob, &since, 2_000).await;
            let tl = &v["rooms"]["join"][&room]["timeline"];
            assert_ne!(tl["limited"], true, "a gap: {v}");
            seen.extend(timeline_bodies(&v, &room));
            since = v["next_batch"].as_str().unwrap().to_owned();
        }
        seen
    };
    let ((), seen) = tokio::join!(senders, reader);
    let mut want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let mut got = seen.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every message exactly once, in: {seen:?}");

    // A logout on node 1 counts on node 2 at once.
    let (st, v) = n2.get(&alice, "/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = n1
        .post(&alice, "/_matrix/client/v3/logout", json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let started = Instant::now();
    loop {
        let (st, _) = n2.get(&alice, "/_matrix/client/v3/account/whoami").await;
        if st == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "node 2 still takes the token: {st}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("logout refused on node 2 after {:?}", started.elapsed());
}

/// Sends into one room through three nodes at once: one linear DAG (each event has one
/// `prev_event`, no two share one), no event lost or duplicated.
#[tokio::test]
async fn concurrent_sends_across_nodes_stay_linear() {
    let (_dir, db, nodes) = cluster(3).await;
    let alice = nodes[0].1.register("alice").await;
    let room = nodes[0].1.create_room(&alice, json!({})).await;
    let per_node = 25;
    let sends = nodes.iter().enumerate().map(|(n, (_, s))| {
        let (alice, room) = (&alice, &room);
        async move {
            for i in 0..per_node {
                let body = format!("n{n}-{i}");
                s.send_text(alice, room, &body, &body).await;
            }
        }
    });
    futures::future::join_all(sends).await;

    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, json FROM events WHERE room_id = $1 AND outlier = 0")
            .bind(&room)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut bodies = vec![];
    let mut prevs_seen = std::collections::HashSet::new();
    for (id, json) in &rows {
        let v: Value = serde_json::from_str(json).unwrap();
        let prevs = v["prev_events"].as_array().unwrap();
        if v["type"] == "m.room.create" {
            assert!(prevs.is_empty());
            continue;
        }
        assert_eq!(
            prevs.len(),
            1,
            "{id} has {} prev_events: a fork",
            prevs.len()
        );
        assert!(
            prevs_seen.insert(prevs[0].as_str().unwrap().to_owned()),
            "two events follow {}: a fork",
            prevs[0]
        );
        if v["type"] == "m.room.message" {
            bodies.push(v["content"]["body"].as_str().unwrap().to_owned());
        }
    }
    bodies.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|n| (0..per_node).map(move |i| format!("n{n}-{i}")))
        .collect();
    want.sort();
    assert_eq!(bodies, want);
    let (st, v) = nodes[1]
        .1
        .get(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=200",
                enc(&room)
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let listed = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .count();
    assert_eq!(listed, 3 * per_node);
}

/// SIGTERM with `[shutdown] drain_delay_ms`: readiness says "not ready" at once while the node
/// still serves, the long-poll in hand is answered (200) right after the delay, and the process
/// is gone soon after.
#[tokio::test]
async fn sigterm_drains_then_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(Backend::Sqlite, dir.path()).await;
    let conf = dir.path().join("palabre.toml");
    std::fs::write(&conf, "[shutdown]\ndrain_delay_ms = 800\ngrace_ms = 3000\n").unwrap();
    let port = free_port();
    let conf_s = conf.display().to_string();
    let mut node =
        crate::crash::spawn_with(dir.path(), &db, port, &[("PALABRE_CONFIG", &conf_s)]).await;
    let s = client_of(port);
    let alice = s.register("alice").await;
    let since = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = async {
        let t = Instant::now();
        let path = format!(
            "/_matrix/client/v3/sync?timeout=20000&since={}",
            enc(&since)
        );
        let (st, _) = s.get(&alice, &path).await;
        (st, t.elapsed())
    };
    let term = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &node.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        // Not ready at once, still serving.
        let http = reqwest::Client::new();
        let mut not_ready = None;
        for _ in 0..40 {
            let r = http
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .await
                .expect("still serving during the drain delay");
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                not_ready = Some(sent.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        not_ready.expect("readiness went on saying ready")
    };
    let ((st, polled), not_ready) = tokio::join!(poll, term);
    assert!(not_ready < Duration::from_millis(500), "{not_ready:?}");
    assert_eq!(st, StatusCode::OK);
    assert!(
        polled < Duration::from_secs(5),
        "the long-poll waited {polled:?} (its timeout was 20 s)"
    );
    let mut gone = false;
    for _ in 0..100 {
        if node.0.try_wait().unwrap().is_some() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the process is still running 5 s after the long-poll ended"
    );
}

/// What each node keeps in memory follows the others: typing on node 1 reaches a long-poll on
/// node 2; a suspension made through node 1 is enforced by node 2.
#[tokio::test]
async fn nodes_share_typing_and_admin_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(Backend::Postgres, dir.path()).await;
    let (_p1, n1, admin) = crate::crash::spawn_with_admin(dir.path(), &db, free_port()).await;
    let port2 = free_port();
    let _p2 = spawn(dir.path(), &db, port2).await;
    let n2 = client_of(port2);
    let alice = n1.register("alice").await;
    let bob = n2.register("bob").await;
    let room = n1
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    n2.join(&bob, &room).await;

    let since = n2.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut since = since;
        loop {
            let v = sync_all(&n2, &bob, &since, 5_000).await;
            let typing = v["rooms"]["join"][&room]["ephemeral"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| {
                    e["type"] == "m.typing" && e["content"]["user_ids"] == json!([alice.user_id])
                });
            if typing {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node 2 never showed alice typing"
            );
            since = v["next_batch"].as_str().unwrap().to_owned();
        }
    };
    let typing = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (st, v) = n1
            .put(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/typing/{}",
                    enc(&room),
                    enc(&alice.user_id)
                ),
                json!({"typing": true, "timeout": 30000}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    };
    tokio::join!(poll, typing);

    let (st, v) = n1
        .put(
            &admin,
            &format!("/_synapse/admin/v1/suspend/{}", enc(&alice.user_id)),
            json!({"suspend": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let started = Instant::now();
    loop {
        let (st, v) = n2
            .put(
                &alice,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/s{}",
                    enc(&room),
                    started.elapsed().as_nanos()
                ),
                json!({"msgtype": "m.text", "body": "still here?"}),
            )
            .await;
        if st == StatusCode::FORBIDDEN {
            assert_eq!(v["errcode"], "M_USER_SUSPENDED", "{v}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "node 2 still lets a suspended account send: {st} {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HAProxy (Debian's package, installed by scripts/test.sh when missing) in front of nodes.
struct Haproxy {
    _proc: Proc,
    port: u16,
}

impl Haproxy {
    async fn start(dir: &std::path::Path, nodes: &[u16]) -> Haproxy {
        let bin = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("haproxy");
        let port = free_port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server n{i} 127.0.0.1:{p} check\n"))
            .collect();
        // docs/high-availability.md explains each line; the intervals are shorter here.
        let cfg = format!(
            "global\n    maxconn 4000\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 70s\n    \
             timeout server 70s\n    timeout http-keep-alive 2s\n    retries 3\n    \
             option redispatch\n    retry-on conn-failure empty-response\n\
             frontend matrix\n    bind 127.0.0.1:{port}\n    default_backend palabre\n\
             backend palabre\n    balance roundrobin\n    option httpchk GET /health/ready\n    \
             http-check expect status 200\n    default-server inter 200ms fall 1 rise 2\n{servers}"
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Proc)
            .unwrap_or_else(|e| panic!("{bin} does not start ({e}): apt-get install haproxy"));
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Haproxy { _proc: child, port };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("HAProxy does not serve");
    }
}

/// Stops a node as an orchestrator does (SIGTERM) and waits for it to be gone.
async fn terminate(p: &mut Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        exits_within(p, Duration::from_secs(10)).await,
        "the node did not stop within 10 s of SIGTERM"
    );
}

/// Whether the process ends within `within`.
async fn exits_within(p: &mut Proc, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if p.0.try_wait().unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Three nodes behind HAProxy, restarted one after the other (SIGTERM, start again) while a
/// client sends messages and another syncs, both through the load balancer and retrying a
/// request only when its connection fails: every send succeeds, every message is delivered
/// once, and no answer is a 5xx.
#[tokio::test]
async fn rolling_restart_behind_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(Backend::Postgres, dir.path()).await;
    let conf = dir.path().join("palabre.toml");
    std::fs::write(&conf, "[shutdown]\ndrain_delay_ms = 700\ngrace_ms = 5000\n").unwrap();
    let conf_s = conf.display().to_string();
    let env = [("PALABRE_CONFIG", conf_s.as_str())];
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = vec![];
    for p in &ports {
        procs.push(crate::crash::spawn_with(dir.path(), &db, *p, &env).await);
    }
    let lb = Haproxy::start(dir.path(), &ports).await;
    let s = client_of(lb.port);
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&bob, &room).await;
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", lb.port);
    let done = std::sync::atomic::AtomicBool::new(false);
    let server_errors = std::sync::Mutex::new(Vec::<String>::new());
    let sent = std::sync::atomic::AtomicUsize::new(0);

    // Sends until the restarts are over; a connection error is retried (same transaction id).
    let sender = async {
        let mut i = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            let url = format!(
                "{base}/_matrix/client/v3/rooms/{}/send/m.room.message/r{i}",
                enc(&room)
            );
            let body = json!({"msgtype": "m.text", "body": format!("r{i}")});
            let mut ok = false;
            for _ in 0..100 {
                match http
                    .put(&url)
                    .bearer_auth(&alice.token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        ok = true;
                        break;
                    }
                    Ok(r) => {
                        server_errors
                            .lock()
                            .unwrap()
                            .push(format!("send r{i}: {}", r.status()));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            assert!(ok, "send r{i} failed: {:?}", server_errors.lock().unwrap());
            i += 1;
            sent.store(i, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    };
    // Syncs through the load balancer until everything sent arrived.
    let receiver = async {
        let mut since = since;
        let mut seen: Vec<String> = vec![];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let all_sent = done.load(std::sync::atomic::Ordering::Acquire);
            let n = sent.load(std::sync::atomic::Ordering::Acquire);
            if all_sent && seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "messages missing after 120 s");
            let url = format!(
                "{base}/_matrix/client/v3/sync?timeout=3000&since={}&filter={}",
                enc(&since),
                enc(ALL_TIMELINE)
            );
            match http.get(&url).bearer_auth(&bob.token).send().await {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap();
                    assert_ne!(
                        v["rooms"]["join"][&room]["timeline"]["limited"], true,
                        "a gap"
                    );
                    seen.extend(timeline_bodies(&v, &room));
                    since = v["next_batch"].as_str().unwrap().to_owned();
                }
                Ok(r) => server_errors
                    .lock()
                    .unwrap()
                    .push(format!("sync: {}", r.status())),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let restarts = async {
        for (k, p) in procs.iter_mut().enumerate() {
            tokio::time::sleep(Duration::from_millis(700)).await;
            terminate(p).await;
            *p = crate::crash::spawn_with(dir.path(), &db, ports[k], &env).await;
            // HAProxy sees it ready again (rise 2 × 200 ms).
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        done.store(true, std::sync::atomic::Ordering::Release);
    };
    let ((), seen, ()) = tokio::join!(sender, receiver, restarts);
    let errors = server_errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "answers of the 5xx kind: {errors:?}");
    let n = sent.load(std::sync::atomic::Ordering::Acquire);
    let mut got = seen.clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), seen.len(), "a message delivered twice");
    let mut want: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    eprintln!("rolling restart of 3 nodes: {n} messages sent and delivered once, no 5xx");
}
