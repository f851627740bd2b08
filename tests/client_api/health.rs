//! Liveness and readiness: `/health`, `/health/ready` (database checked, "not ready" once a
//! stop begins) and the `palabre health` command that Docker's `HEALTHCHECK` runs.

use std::{process::Command, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{free_port, Backend, TestServer};

crate::both_backends!(ready_then_draining, health_command);

async fn ready(s: &TestServer) -> (StatusCode, Value) {
    let resp = s
        .http
        .get(format!("{}/health/ready", s.base))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap())
}

async fn ready_then_draining(b: Backend) {
    let s = TestServer::start(b).await;
    let resp = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "OK");
    let (st, v) = ready(&s).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    s.services().health.begin_drain();
    let (st, v) = ready(&s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["reason"], "draining");
    // Liveness is not readiness: the process still answers.
    let resp = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    s.stop().await;
}

/// Runs `palabre health` with the given environment; true when it exits 0.
fn run_health(env: &[(&str, String)]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_palabre"))
        .arg("health")
        .env_remove("PALABRE_LISTEN")
        .env_remove("PALABRE_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The real binary: `palabre health` finds the server from `PALABRE_LISTEN` or from the file
/// `PALABRE_CONFIG` names (a wildcard address read as loopback), says not ready when the
/// database is gone (PostgreSQL: the database dropped under it), and fails once it is killed.
async fn health_command(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::database_url(b, dir.path()).await;
    let port = free_port();
    let proc = crate::crash::spawn(dir.path(), &db, port).await;
    assert!(run_health(&[(
        "PALABRE_LISTEN",
        format!("127.0.0.1:{port}")
    )]));
    let file = dir.path().join("palabre.toml");
    std::fs::write(&file, format!("listen = \"0.0.0.0:{port}\"\n")).unwrap();
    assert!(run_health(&[(
        "PALABRE_CONFIG",
        file.display().to_string()
    )]));
    let url = format!("http://127.0.0.1:{port}");
    assert!(!run_health(&[(
        "PALABRE_LISTEN",
        format!("127.0.0.1:{}", free_port())
    )]));
    if matches!(b, Backend::Postgres) {
        let (base, name) = db.rsplit_once('/').unwrap();
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres"))
                .await
                .unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let mut last = None;
        for _ in 0..40 {
            let resp = http
                .get(format!("{url}/health/ready"))
                .send()
                .await
                .unwrap();
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                let v: Value = resp.json().await.unwrap();
                assert!(v["reason"].as_str().unwrap().starts_with("database"), "{v}");
                last = Some(v);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            last.is_some(),
            "readiness did not notice the database was gone"
        );
        assert!(!run_health(&[(
            "PALABRE_LISTEN",
            format!("127.0.0.1:{port}")
        )]));
    }
    drop(proc);
    assert!(!run_health(&[(
        "PALABRE_LISTEN",
        format!("127.0.0.1:{port}")
    )]));
}
