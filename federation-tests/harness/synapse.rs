//! One Synapse from PyPI, in a virtualenv made once (federation-tests/synapse-venv.sh) and
//! kept under the target directory. Configured here: a plain-HTTP client listener, a TLS
//! federation listener with a certificate from the tests' CA, certificates of other servers
//! checked against that CA, loopback allowed for federation, open registration, no rate limit
//! that a scenario could hit.
//!
//! A missing Synapse is a failure, never a silent skip: only `PALABRE_FEDTESTS_NO_SYNAPSE=1`
//! skips the Synapse scenarios, and it is refused in CI (`CI` set).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use serde_json::json;

use super::{
    client::Client,
    process::{free_port, Proc},
    wait_serving, Homeserver, Net,
};

/// The environment variable that skips the Synapse scenarios (locally only).
pub const SKIP_VAR: &str = "PALABRE_FEDTESTS_NO_SYNAPSE";

pub struct Synapse {
    /// `localhost:<fed_port>`
    pub name: String,
    pub client_port: u16,
    pub fed_port: u16,
    pub dir: PathBuf,
    python: PathBuf,
    config_file: PathBuf,
    log: PathBuf,
    https: reqwest::Client,
    proc: Option<Proc>,
}

/// The Synapse virtualenv's python, installing it first if needed; None when the Synapse
/// scenarios are skipped on purpose.
pub fn python() -> Option<PathBuf> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| !v.is_empty() && v != "0") {
        assert!(
            std::env::var_os("CI").is_none(),
            "{SKIP_VAR} is set but CI is too: the Synapse scenarios are never skipped in CI"
        );
        eprintln!("{SKIP_VAR} is set: Synapse scenario skipped");
        return None;
    }
    let venv = std::env::var_os("PALABRE_FEDTESTS_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("synapse-venv"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("federation-tests/synapse-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "Synapse could not be installed into {} ({}):\n{}{}\n\
             The Synapse scenarios need PyPI (pip install matrix-synapse). To skip them on a \
             machine without network, set {SKIP_VAR}=1 (refused in CI).",
            venv.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    Some(venv.join("bin/python"))
}

/// A fresh ed25519 signing key in Synapse's file format (`ed25519 <id> <unpadded seed>`).
fn signing_key() -> String {
    let seed: [u8; 32] = rand::random();
    format!(
        "ed25519 a_fedtests {}\n",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed)
    )
}

impl Synapse {
    /// Installs (once) and starts a Synapse; None when skipped with `PALABRE_FEDTESTS_NO_SYNAPSE`.
    pub(super) async fn create(net: &Net, label: &str) -> Option<Synapse> {
        let python = python()?;
        let dir = net.root().join(label);
        std::fs::create_dir_all(&dir).expect("synapse data dir");
        let cert = net.ca.issue(&dir);
        let (client_port, fed_port) = (free_port(), free_port());
        let name = format!("localhost:{fed_port}");
        std::fs::write(dir.join("signing.key"), signing_key()).expect("write signing.key");
        let secret = ::palabre::util::random_string(32);
        let lots = json!({ "per_second": 100000, "burst_count": 100000 });
        let path = |f: &str| dir.join(f).display().to_string();
        // YAML is a superset of JSON: the configuration is written as JSON.
        let config = json!({
            "server_name": name,
            "pid_file": path("homeserver.pid"),
            "public_baseurl": format!("http://127.0.0.1:{client_port}/"),
            "listeners": [
                {
                    "port": client_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": false,
                    "x_forwarded": false,
                    "resources": [{ "names": ["client"], "compress": false }],
                },
                {
                    "port": fed_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": true,
                    "resources": [{ "names": ["federation"], "compress": false }],
                },
            ],
            "tls_certificate_path": cert.cert_file,
            "tls_private_key_path": cert.key_file,
            "federation_verify_certificates": true,
            "federation_custom_ca_list": [net.ca.pem_file],
            // Synapse refuses private and loopback addresses for federation by default.
            "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
            "federation": {
                "destination_min_retry_interval": "1s",
                "destination_retry_multiplier": 2,
                "destination_max_retry_interval": "10s",
            },
            "trusted_key_servers": [],
            "suppress_key_server_warning": true,
            "database": { "name": "sqlite3", "args": { "database": path("homeserver.db") } },
            "media_store_path": path("media_store"),
            "signing_key_path": path("signing.key"),
            "report_stats": false,
            "macaroon_secret_key": format!("macaroon-{secret}"),
            "form_secret": format!("form-{secret}"),
            "registration_shared_secret": format!("registration-{secret}"),
            "enable_registration": true,
            "enable_registration_without_verification": true,
            "presence": { "enabled": false },
            "rc_message": lots,
            "rc_registration": lots,
            "rc_login": { "address": lots, "account": lots, "failed_attempts": lots },
            "rc_joins": { "local": lots, "remote": lots },
            "rc_joins_per_room": lots,
            "rc_invites": { "per_room": lots, "per_user": lots, "per_issuer": lots },
            "rc_key_requests": lots,
            "rc_3pid_validation": lots,
            "rc_room_creation": lots,
            "rc_federation": {
                "window_size": 1000,
                "sleep_limit": 100000,
                "sleep_delay": 1,
                "reject_limit": 100000,
                "concurrent": 1000,
            },
        });
        let config_file = dir.join("homeserver.yaml");
        std::fs::write(&config_file, serde_json::to_string_pretty(&config).unwrap())
            .expect("write homeserver.yaml");
        let mut server = Synapse {
            name,
            client_port,
            fed_port,
            log: dir.join("synapse.log"),
            dir,
            python,
            config_file,
            https: net.https().clone(),
            proc: None,
        };
        server.start().await;
        Some(server)
    }

    /// Starts the process (again) on the same configuration, data and ports; returns once
    /// both listeners answer.
    pub async fn start(&mut self) {
        assert!(
            self.proc.is_none(),
            "synapse {} is already running",
            self.name
        );
        let mut cmd = Command::new(&self.python);
        cmd.args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&self.config_file)
            .current_dir(&self.dir)
            .env("PYTHONUNBUFFERED", "1");
        let mut proc = Some(Proc::spawn(
            &format!("synapse ({})", self.name),
            cmd,
            &self.log,
        ));
        wait_serving(
            &mut proc,
            self,
            "/_matrix/client/versions",
            &self.https,
            Duration::from_secs(180),
        )
        .await;
        self.proc = proc;
    }

    /// Stops the process (SIGTERM, SIGKILL after 20 s); the data dir stays.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop(Duration::from_secs(20));
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    pub fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(&self.log, lines)
    }
}

impl Homeserver for Synapse {
    fn server_name(&self) -> &str {
        &self.name
    }
    fn client(&self) -> Client {
        Client::new(
            format!("http://127.0.0.1:{}", self.client_port),
            self.name.clone(),
        )
    }
    fn federation_base(&self) -> String {
        format!("https://localhost:{}", self.fed_port)
    }
    fn label(&self) -> String {
        format!("synapse ({})", self.name)
    }
}
