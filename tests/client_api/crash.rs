use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{enc, free_port, password, Backend, TestServer, User};

crate::both_backends!(
    kill_9_loses_no_acknowledged_event,
    kill_9_after_retried_to_device,
    kill_9_after_a_failed_write,
);

/// The server process; killed and reaped whatever happens to the test.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real `palabre serve` binary and waits until it answers.
pub(crate) async fn spawn(dir: &std::path::Path, db: &str, port: u16) -> Proc {
    spawn_with(dir, db, port, &[]).await
}

/// `spawn` with extra environment variables (debug failpoints).
pub(crate) async fn spawn_with(
    dir: &std::path::Path,
    db: &str,
    port: u16,
    env: &[(&str, &str)],
) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_palabre"))
        .envs(env.iter().copied())
        .arg("serve")
        .env("PALABRE_DATA_DIR", dir)
        .env("PALABRE_DATABASE_URL", db)
        .env("PALABRE_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALABRE_REGISTRATION", "open")
        .env("PALABRE_RATE_LIMITS", "off")
        .env("PALABRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .expect("palabre binary starts");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

/// Messages sent under load, the process killed with SIGKILL mid-way: after a restart every
/// acknowledged event is there (SQLite WAL with synchronous=NORMAL survives a process crash).
async fn kill_9_loses_no_acknowledged_event(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(b, dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), &db, port).await;
    let s = client_of(port);
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;

    // Four senders in a loop; the server is killed while they run.
    let senders = (0..4).map(|w| {
        let (s, alice, room) = (&s, &alice, &room);
        async move {
            let mut acked = vec![];
            for i in 0..400 {
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/w{w}-{i}",
                    enc(room)
                );
                let body = json!({"msgtype": "m.text", "body": format!("{w}-{i}")});
                let Some((StatusCode::OK, v)) = s
                    .try_call(Method::PUT, &path, Some(&alice.token), Some(body))
                    .await
                else {
                    break;
                };
                acked.push(v["event_id"].as_str().unwrap().to_owned());
            }
            acked
        }
    });
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
    };
    let (acked, ()) = tokio::join!(futures::future::join_all(senders), kill);
    let acked: Vec<String> = acked.into_iter().flatten().collect();
    assert!(
        !acked.is_empty(),
        "some sends were acknowledged before the kill"
    );

    let _child = spawn(dir.path(), &db, port).await;
    let (st, v) = s.login(password("alice", "correct horse 1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = s
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
                enc(&room)
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let stored: std::collections::HashSet<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    // And the room still takes new events after the crash.
    let (st, _) = s
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/after",
                enc(&room)
            ),
            Some(&token),
            Some(json!({"msgtype": "m.text", "body": "after"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

/// A to-device message retried under the same transaction id (nothing new is stored), the
/// recipient's sync token taken, the process killed: after the restart a new message still
/// reaches the recipient syncing from that token (the stream never hands out again a position a
/// client has seen, so the new message is not taken as already delivered and deleted).
async fn kill_9_after_retried_to_device(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(b, dir.path()).await;
    let port = free_port();
    let mut child = spawn(dir.path(), &db, port).await;
    let s = client_of(port);
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    send_to_device(&s, &alice, &bob, "t1", 1).await;
    for _ in 0..5 {
        send_to_device(&s, &alice, &bob, "t1", 1).await;
    }
    let first = s.sync(&bob, None, 0).await;
    let events = first["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 1, "{first}");
    let token = first["next_batch"].as_str().unwrap().to_owned();
    child.0.kill().expect("SIGKILL");
    child.0.wait().unwrap();

    let _child = spawn(dir.path(), &db, port).await;
    send_to_device(&s, &alice, &bob, "t2", 2).await;
    let next = s.sync(&bob, Some(&token), 0).await;
    let events = next["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        events.len(),
        1,
        "the message sent after the restart: {next}"
    );
    assert_eq!(events[0]["content"]["n"], 2);
}

async fn send_to_device(s: &TestServer, from: &User, to: &User, txn: &str, n: u32) {
    let body = json!({"messages": {to.user_id.clone(): {to.device_id.clone(): {"n": n}}}});
    let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
    let (st, v) = s
        .call(Method::PUT, &path, Some(&from.token), Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A room event whose write fails and rolls back (debug failpoint), a client's token taken
/// after it, the process killed: after the restart the next event still reaches that token
/// (the failed write's position was recorded as abandoned before any client could see it, so a
/// restart does not hand it out again).
async fn kill_9_after_a_failed_write(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(b, dir.path()).await;
    let port = free_port();
    let failpoint = [("PALABRE_FAILPOINT", "fail_write_of_failpoint_body")];
    let mut child = spawn_with(dir.path(), &db, port, &failpoint).await;
    let s = client_of(port);
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &room, "t0", "before").await;
    let (st, _) = s
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                enc(&room)
            ),
            Some(&alice.token),
            Some(json!({"msgtype": "m.text", "body": "failpoint"})),
        )
        .await;
    assert!(st.is_server_error(), "the failpoint did not fire: {st}");
    // The token a client holds once the failed write's position is done (its abandonment is
    // recorded in the background, in milliseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = s.sync(&alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    child.0.kill().expect("SIGKILL");
    child.0.wait().unwrap();

    let _child = spawn(dir.path(), &db, port).await;
    s.send_text(&alice, &room, "t2", "after").await;
    let next = s.sync(&alice, Some(&token), 0).await;
    assert_eq!(
        crate::common::timeline_bodies(&next, &room),
        vec!["after".to_owned()],
        "{next}"
    );
}

/// A client of the spawned process on `port` (the test does not own that server).
pub(crate) fn client_of(port: u16) -> TestServer {
    TestServer {
        base: format!("http://127.0.0.1:{port}"),
        running: None,
        http: reqwest::Client::new(),
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// A real `palabre serve` whose database has the admin `boss`, made as an operator would
/// (`palabre user create --admin`), with a client of it and the admin logged in.
pub(crate) async fn spawn_with_admin(
    dir: &std::path::Path,
    db: &str,
    port: u16,
) -> (Proc, TestServer, User) {
    let status = Command::new(env!("CARGO_BIN_EXE_palabre"))
        .args([
            "user",
            "create",
            "boss",
            "--password",
            "correct horse 1",
            "--admin",
        ])
        .env("PALABRE_DATA_DIR", dir)
        .env("PALABRE_DATABASE_URL", db)
        .env("PALABRE_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let proc = spawn(dir, db, port).await;
    let s = client_of(port);
    let (st, v) = s.login(password("boss", "correct horse 1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let admin = User {
        user_id: v["user_id"].as_str().unwrap().to_owned(),
        token: v["access_token"].as_str().unwrap().to_owned(),
        device_id: v["device_id"].as_str().unwrap().to_owned(),
    };
    (proc, s, admin)
}

/// Records an admin job as a process killed while running it leaves it: `active`, nothing
/// done yet.
pub(crate) async fn leave_active_job(
    db: &str,
    id: &str,
    kind: &str,
    target: &str,
    params: serde_json::Value,
) {
    let store = palabre::store::Db::connect(db, 2).await.unwrap();
    let now = palabre::util::now_ms();
    store
        .insert_job(
            &palabre::store::admin_jobs::JobRow {
                id: id.into(),
                kind: kind.into(),
                target: target.into(),
                params: params.to_string(),
                status: "active".into(),
                done: 0,
                total: 0,
                result: None,
                error: None,
                created_ts: now,
                updated_ts: now,
            },
            0,
        )
        .await
        .unwrap();
    store.close().await;
}
