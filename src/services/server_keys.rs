//! The server's ed25519 signing key: generated on first start in the data dir, used to sign
//! events and the key server response.

use std::path::Path;

use base64::Engine;
use ruma::{
    serde::Base64,
    signatures::{sign_json, Ed25519KeyPair, KeyPair},
    CanonicalJsonObject, CanonicalJsonValue,
};
use serde_json::json;

pub struct ServerKeys {
    pub pair: Ed25519KeyPair,
    /// `ed25519:<version>`
    pub key_id: String,
    /// unpadded standard base64 of the public key
    pub public_b64: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

impl ServerKeys {
    /// Loads `signing.key` from the data dir, creating it (mode 0600) when absent.
    /// Format: `ed25519 <version> <base64 PKCS#8 document>`.
    pub fn load_or_generate(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("signing.key");
        if !path.exists() {
            std::fs::create_dir_all(data_dir)?;
            let doc = Ed25519KeyPair::generate();
            let version = format!("a_{}", crate::util::random_string(4));
            let line = format!("ed25519 {version} {}\n", B64.encode(&doc[..]));
            write_private(&path, line.as_bytes())?;
        }
        let text = std::fs::read_to_string(&path)?;
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [alg, version, doc] = parts.as_slice() else {
            anyhow::bail!("{}: expected `ed25519 <version> <key>`", path.display());
        };
        if *alg != "ed25519" {
            anyhow::bail!("{}: only ed25519 keys are supported", path.display());
        }
        let der = B64.decode(doc.trim_end_matches('='))?;
        let pair = Ed25519KeyPair::from_der(&der, (*version).to_owned())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let public_b64 =
            Base64::<ruma::serde::base64::Standard, _>::new(pair.public_key().to_vec()).encode();
        Ok(Self {
            key_id: format!("ed25519:{version}"),
            public_b64,
            pair,
        })
    }

    /// The signed `/_matrix/key/v2/server` response.
    pub fn server_key_response(
        &self,
        server_name: &str,
        now_ms: i64,
        validity_secs: u64,
    ) -> serde_json::Value {
        let validity_ms = i64::try_from(validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let body = json!({
            "server_name": server_name,
            "valid_until_ts": now_ms.saturating_add(validity_ms),
            "verify_keys": { &self.key_id: { "key": self.public_b64 } },
            "old_verify_keys": {},
        });
        let mut obj: CanonicalJsonObject = match CanonicalJsonValue::try_from(body) {
            Ok(CanonicalJsonValue::Object(o)) => o,
            _ => return json!({}),
        };
        if sign_json(server_name, &self.pair, &mut obj).is_err() {
            return json!({});
        }
        serde_json::to_value(&obj).unwrap_or_default()
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_bytes().to_vec()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)
    }
    #[cfg(not(unix))]
    {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)
    }
}
