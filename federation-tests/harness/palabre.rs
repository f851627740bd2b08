//! A Palabre process: the `palabre` binary built from this repository, with its own data dir
//! and a configuration file written here, a plain-HTTP client listener and a TLS federation
//! listener on loopback, named `localhost:<TLS port>`.

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Duration};

use sqlx::Connection;

use super::{
    client::Client,
    process::{free_port, Proc},
    wait_serving, Homeserver, Net,
};

/// Where a Palabre keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Sqlite,
    /// A fresh database in the throwaway cluster of scripts/test.sh (`PALABRE_TEST_PG`).
    Postgres,
}

/// What differs between the Palabre processes of a scenario.
#[derive(Debug, Clone, Default)]
pub struct PalabreOptions {
    pub backend: Backend,
    /// `federation.allow_list`.
    pub allow_list: Option<Vec<String>>,
    /// `federation.resolve_overrides`: server name -> host:port.
    pub resolve_overrides: Vec<(String, String)>,
    /// `presence` (off by default, as in Palabre's own default).
    pub presence: bool,
    /// The TLS port, hence the name `localhost:<port>` (a free one when unset): scenarios whose
    /// configurations name each other pick the ports first.
    pub fed_port: Option<u16>,
    /// TOML appended to the written configuration (whole sections such as `[tchap]`).
    pub extra_toml: String,
}

pub struct Palabre {
    /// `localhost:<fed_port>`
    pub name: String,
    pub client_port: u16,
    pub fed_port: u16,
    /// Its metrics listener (`/_palabre/metrics`).
    pub metrics_port: u16,
    /// Its data directory (kept across restarts).
    pub dir: PathBuf,
    /// Environment variables of the next starts (debug failpoints such as
    /// `PALABRE_FAILPOINT`); the configuration file is the rest.
    pub env: Vec<(String, String)>,
    label: String,
    config_file: PathBuf,
    log: PathBuf,
    https: reqwest::Client,
    proc: Option<Proc>,
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

async fn postgres_database() -> String {
    let base = std::env::var("PALABRE_TEST_PG").expect(
        "PALABRE_TEST_PG is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("fedt_{}", ::palabre::util::random_string(12).to_lowercase());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("connect to the test PostgreSQL cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    format!("{base}/{name}")
}

impl Palabre {
    pub(super) async fn create(net: &Net, label: &str, opts: PalabreOptions) -> Palabre {
        let dir = net.root().join(label);
        std::fs::create_dir_all(&dir).expect("palabre data dir");
        let cert = net.ca.issue(&dir);
        let (client_port, fed_port) = (free_port(), opts.fed_port.unwrap_or_else(free_port));
        let metrics_port = free_port();
        let name = format!("localhost:{fed_port}");
        let database_url = match opts.backend {
            Backend::Sqlite => format!("sqlite://{}/palabre.db", dir.display()),
            Backend::Postgres => postgres_database().await,
        };
        let log_filter = std::env::var("PALABRE_FEDTESTS_LOG")
            .unwrap_or_else(|_| "info,palabre=debug,sqlx=warn,ruma_state_res=warn".into());
        let lots = "{ per_second = 100000.0, burst = 100000.0 }";
        let mut toml = format!(
            r#"# Written by federation-tests for the server "{label}".
server_name = {name}
listen = {listen}
public_baseurl = {baseurl}
data_dir = {data_dir}
database_url = {database_url}
registration = "open"
presence = {presence}

[log]
filter = {log_filter}

[tls]
listen = {tls_listen}
certificate = {cert}
private_key = {key}

[rate_limits]
login = {lots}
registration = {lots}
message = {lots}
search = {lots}

[password_hashing]
memory_kib = 64
iterations = 1

[outbound]
ip_range_allowlist = ["127.0.0.0/8", "::1"]

[federation]
extra_ca_file = {ca}
max_retry_interval_ms = 2000
"#,
            name = toml_str(&name),
            listen = toml_str(&format!("127.0.0.1:{client_port}")),
            baseurl = toml_str(&format!("http://127.0.0.1:{client_port}/")),
            data_dir = toml_str(&dir.display().to_string()),
            database_url = toml_str(&database_url),
            log_filter = toml_str(&log_filter),
            tls_listen = toml_str(&format!("127.0.0.1:{fed_port}")),
            cert = toml_str(&cert.cert_file.display().to_string()),
            key = toml_str(&cert.key_file.display().to_string()),
            ca = toml_str(&net.ca.pem_file.display().to_string()),
            presence = opts.presence,
        );
        if let Some(list) = &opts.allow_list {
            let items: Vec<String> = list.iter().map(|s| toml_str(s)).collect();
            writeln!(toml, "allow_list = [{}]", items.join(", ")).unwrap();
        }
        if !opts.resolve_overrides.is_empty() {
            toml.push_str("\n[federation.resolve_overrides]\n");
            for (server, target) in &opts.resolve_overrides {
                writeln!(toml, "{} = {}", toml_str(server), toml_str(target)).unwrap();
            }
        }
        writeln!(
            toml,
            "\n[metrics]\nlisten = {}",
            toml_str(&format!("127.0.0.1:{metrics_port}"))
        )
        .unwrap();
        toml.push('\n');
        toml.push_str(&opts.extra_toml);
        let config_file = dir.join("palabre.toml");
        std::fs::write(&config_file, toml).expect("write palabre.toml");
        let mut server = Palabre {
            name,
            client_port,
            fed_port,
            metrics_port,
            log: dir.join("palabre.log"),
            dir,
            env: vec![],
            label: label.to_owned(),
            config_file,
            https: net.https().clone(),
            proc: None,
        };
        server.start().await;
        server
    }

    /// Another node of this server (PostgreSQL only): the same configuration, database, data
    /// directory (signing key, media) and server name, its own client and TLS listeners, its
    /// own log, and a metrics listener; peers reach this server on the first node's port.
    pub async fn node(&self, label: &str) -> Palabre {
        let text = std::fs::read_to_string(&self.config_file).expect("palabre.toml");
        let (client_port, fed_port, metrics_port) = (free_port(), free_port(), free_port());
        let mut toml = String::new();
        let mut section = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.to_owned();
            }
            let port = match section.as_str() {
                "" => client_port,
                "[tls]" => fed_port,
                _ => metrics_port,
            };
            let line = if line.starts_with("listen = ") {
                format!("listen = {}", toml_str(&format!("127.0.0.1:{port}")))
            } else if line.starts_with("public_baseurl = ") {
                format!(
                    "public_baseurl = {}",
                    toml_str(&format!("http://127.0.0.1:{client_port}/"))
                )
            } else {
                line.to_owned()
            };
            toml.push_str(&line);
            toml.push('\n');
        }
        assert!(
            text.contains("database_url = \"postgres"),
            "nodes share a PostgreSQL database"
        );
        let config_file = self.dir.join(format!("{label}.toml"));
        std::fs::write(&config_file, toml).expect("write the node's configuration");
        let mut node = Palabre {
            name: self.name.clone(),
            client_port,
            fed_port,
            metrics_port,
            log: self.dir.join(format!("{label}.log")),
            dir: self.dir.clone(),
            env: vec![],
            label: label.to_owned(),
            config_file,
            https: self.https.clone(),
            proc: None,
        };
        node.start().await;
        node
    }

    /// Starts the process (again) on the same configuration, data and ports; returns once
    /// both listeners answer.
    pub async fn start(&mut self) {
        assert!(self.proc.is_none(), "{} is already running", self.label);
        // PALABRE_FEDTESTS_BIN runs another build (a release binary for the timing scenarios).
        let bin = std::env::var("PALABRE_FEDTESTS_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_palabre").to_owned());
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--config").arg(&self.config_file);
        // The file is the whole configuration: no PALABRE_* override from the test's
        // environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PALABRE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_BACKTRACE", "1");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Some(Proc::spawn(
            &format!("palabre {} ({})", self.label, self.name),
            cmd,
            &self.log,
        ));
        wait_serving(
            &mut proc,
            self,
            "/health",
            &self.https,
            Duration::from_secs(60),
        )
        .await;
        self.proc = proc;
    }

    /// Stops the process (SIGTERM, SIGKILL after 10 s); the data dir stays.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Kills the process (SIGKILL: a crash); the data dir stays.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The configuration file it runs with (for the `palabre` CLI).
    pub fn config_file(&self) -> &std::path::Path {
        &self.config_file
    }

    pub fn client_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The value of a metric series (`name{labels}` as scraped), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/_palabre/metrics", self.metrics_port);
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.lines()
            .filter_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .next()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(&self.log, lines)
    }
}

impl Homeserver for Palabre {
    fn server_name(&self) -> &str {
        &self.name
    }
    fn client(&self) -> Client {
        Client::new(self.client_base(), self.name.clone())
    }
    fn federation_base(&self) -> String {
        format!("https://localhost:{}", self.fed_port)
    }
    fn label(&self) -> String {
        format!("palabre {} ({})", self.label, self.name)
    }
}
