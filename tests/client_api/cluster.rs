//! Several processes on one database: SQLite refuses a second serving process; on PostgreSQL
//! the nodes share streams, wake-ups, room ordering and caches (docs/high-availability.md).

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    common::{free_port, Backend},
    crash::{spawn, Proc},
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
    let mut exited = false;
    for _ in 0..200 {
        if child.0.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        exited,
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
