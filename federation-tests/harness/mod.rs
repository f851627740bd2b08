//! The harness: a little federation per test (`Net`) with a CA, Palabre processes and at most
//! one Synapse, all on loopback with TLS, and a client library for the scenarios.
#![allow(dead_code)]

pub mod client;
pub mod olm;
pub mod palabre;
pub mod pki;
pub mod process;
pub mod synapse;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

pub use client::{enc, timeline, Client, Session};
pub use palabre::{Backend, Palabre, PalabreOptions};
pub use synapse::Synapse;

/// What the scenarios need from any server, Palabre or Synapse.
pub trait Homeserver {
    /// `localhost:PORT`
    fn server_name(&self) -> &str;
    /// Its client-server API.
    fn client(&self) -> Client;
    /// `https://localhost:PORT`, its federation (TLS) listener.
    fn federation_base(&self) -> String;
    /// For messages: kind and name.
    fn label(&self) -> String;
}

/// Generous bound for anything that crosses servers.
pub const FED_WAIT: Duration = Duration::from_secs(60);

/// One test's federation: a temporary directory (data dirs, configs, logs), a CA, and an
/// HTTPS client that trusts it. Servers made from it stop when dropped; declare them after
/// the `Net` so they are dropped first. The directory is kept when the test panics or when
/// `PALABRE_FEDTESTS_KEEP=1`.
pub struct Net {
    root: Option<tempfile::TempDir>,
    pub ca: pki::Ca,
    https: reqwest::Client,
}

impl Net {
    pub fn new() -> Net {
        let root = tempfile::Builder::new()
            .prefix("palabre-fedtests-")
            .tempdir()
            .expect("temporary directory");
        let ca = pki::Ca::new(root.path());
        let https = ca.https_client();
        Net {
            root: Some(root),
            ca,
            https,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.as_ref().expect("root").path()
    }

    /// An HTTPS client trusting the CA, for the servers' federation listeners.
    pub fn https(&self) -> &reqwest::Client {
        &self.https
    }

    /// Starts a Palabre process (`label` names its data dir and its log lines).
    pub async fn palabre(&self, label: &str, opts: PalabreOptions) -> Palabre {
        Palabre::create(self, label, opts).await
    }

    /// Starts the Synapse, installing it first if needed; None only when the Synapse
    /// scenarios are skipped with `PALABRE_FEDTESTS_NO_SYNAPSE=1` (refused in CI).
    /// Two Palabres with default options: "a" on SQLite, "b" on PostgreSQL.
    pub async fn palabre_pair(&self) -> (Palabre, Palabre) {
        let a = self.palabre("a", PalabreOptions::default()).await;
        let b = self
            .palabre(
                "b",
                PalabreOptions {
                    backend: Backend::Postgres,
                    ..Default::default()
                },
            )
            .await;
        (a, b)
    }

    pub async fn synapse(&self) -> Option<Synapse> {
        Synapse::create(self, "synapse").await
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var("PALABRE_FEDTESTS_KEEP").is_ok_and(|v| v == "1");
        if let (true, Some(root)) = (keep, self.root.take()) {
            eprintln!("federation-tests: files kept in {}", root.keep().display());
        }
    }
}

/// Waits until a freshly spawned server answers on both listeners: `ready_path` on its client
/// listener, and its own keys over TLS (a certificate from the CA) on its federation listener,
/// naming it (not another process on a reused port). Panics with the end of its log if the
/// process exits or `within` passes; the process is then dropped (stopped).
async fn wait_serving(
    proc: &mut Option<process::Proc>,
    server: &dyn Homeserver,
    ready_path: &str,
    https: &reqwest::Client,
    within: Duration,
) {
    let plain = server.client();
    let deadline = std::time::Instant::now() + within;
    loop {
        let p = proc.as_mut().expect("running");
        if let Some(status) = p.exited() {
            let tail = p.log_tail(60);
            *proc = None;
            panic!(
                "{} exited during start-up ({status}); last log lines:\n{tail}",
                server.label()
            );
        }
        let up = plain
            .try_call(reqwest::Method::GET, ready_path, None, None)
            .await;
        if matches!(up, Ok((s, _)) if s.is_success()) {
            let url = format!("{}/_matrix/key/v2/server", server.federation_base());
            if let Ok(resp) = https.get(url).send().await {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                assert_eq!(
                    v["server_name"],
                    server.server_name(),
                    "another server answers on {}'s port",
                    server.label()
                );
                return;
            }
        }
        if std::time::Instant::now() > deadline {
            let tail = p.log_tail(60);
            *proc = None;
            panic!(
                "{} did not answer within {within:?}; last log lines:\n{tail}",
                server.label()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP listener that only counts the connections it receives: a server told to reach a
/// name here (`resolve_overrides`) must never do so.
pub struct Tripwire {
    pub addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    pub async fn new() -> Tripwire {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tripwire");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Tripwire { addr, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A short random suffix for room aliases and user names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        ::palabre::util::random_string(8).to_lowercase()
    )
}
