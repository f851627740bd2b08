//! Not a check: a small federation kept running for outside clients (the matrix-rust-sdk
//! interop run). Starts two Palabres and a Synapse, writes their client API addresses to
//! `$PALABRE_FEDTESTS_HOLD_FILE` as JSON, and stops them when that file is deleted (or after
//! 30 minutes).
//!
//!     PALABRE_FEDTESTS_HOLD_FILE=/tmp/fed.json \
//!       bash scripts/test.sh -E 'test(hold_federation)' --run-ignored all

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Homeserver, Net, PalabreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore] // runs until told to stop; for manual interop runs
async fn hold_federation() {
    let Ok(file) = std::env::var("PALABRE_FEDTESTS_HOLD_FILE") else {
        panic!("set PALABRE_FEDTESTS_HOLD_FILE");
    };
    let net = Net::new();
    let a = net.palabre("a", PalabreOptions::default()).await;
    let b = net.palabre("b", PalabreOptions::default()).await;
    let syn = net.synapse().await;
    let mut servers = json!({
        "a": { "base": a.client().base, "server_name": a.server_name() },
        "b": { "base": b.client().base, "server_name": b.server_name() },
    });
    if let Some(s) = &syn {
        servers["synapse"] = json!({ "base": s.client().base, "server_name": s.server_name() });
    }
    std::fs::write(&file, servers.to_string()).expect("write the hold file");
    let until = Instant::now() + Duration::from_secs(30 * 60);
    while std::path::Path::new(&file).exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = std::fs::remove_file(&file);
}
