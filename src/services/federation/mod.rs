//! Federation (spec: Server-server API): server discovery (resolver.rs), signed outbound
//! requests (client.rs), other servers' keys and the notary (keys.rs).

pub mod client;
pub mod directory;
pub mod edus;
pub mod fetch;
pub mod inbound;
pub mod invite;
pub mod key_fetch;
pub mod keys;
pub mod knock;
pub mod leave;
pub mod membership;
pub mod pdu;
pub mod receive;
pub mod resolver;
pub mod sender;
pub mod serve;

use std::{sync::Arc, time::Duration};

use ruma::ServerName;

use crate::config::FederationConfig;

pub struct Federation {
    pub resolver: resolver::Resolver,
    /// For signed requests to other servers (DNS through the resolver's pins).
    pub http: reqwest::Client,
    pub queues: sender::Queues,
    /// The extra certificate authorities trusted for federation TLS (`extra_ca_file`), for the
    /// other clients that talk to federation peers (media `Location` redirects).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Limits on fetching other servers' keys (negative cache, backoff, one fetch at a time).
    pub key_fetch: key_fetch::KeyFetchLimits,
}

impl Federation {
    pub fn new(cfg: &FederationConfig) -> anyhow::Result<Self> {
        let resolver = resolver::Resolver::new(cfg.resolve_overrides.clone().into_iter().collect());
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("Palabre/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(resolver::PinnedResolver {
                pinned: resolver.pinned.clone(),
            }));
        let mut extra_roots = vec![];
        if let Some(path) = &cfg.extra_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("federation.extra_ca_file {}: {e}", path.display()))?;
            extra_roots = reqwest::Certificate::from_pem_bundle(&pem)?;
            for cert in &extra_roots {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        if cfg.insecure_skip_tls_verify {
            tracing::warn!(
                "federation.insecure_skip_tls_verify is on: other servers' certificates are NOT checked (tests only)"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(Self {
            resolver,
            http: builder.build()?,
            queues: sender::Queues::default(),
            extra_roots,
            key_fetch: key_fetch::KeyFetchLimits::default(),
        })
    }
}

/// Whether this server may talk to `server` (federation on, and on the allow-list if any).
pub fn allowed(cfg: &FederationConfig, server: &ServerName) -> bool {
    cfg.enabled
        && cfg
            .allow_list
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == server.as_str()))
}
