//! Federation (spec: Server-server API): server discovery (resolver.rs), signed outbound
//! requests (client.rs), other servers' keys and the notary (remote_server_keys.rs).

crate::services::face!(
    /// The face of federation: talking to other servers, both ways.
    FederationFace
);

pub mod client;
pub mod directory;
pub mod edus;
pub mod fetch;
pub mod inbound;
pub mod invite;
pub mod joins;
pub mod key_fetch;
pub mod knock;
pub mod leave;
pub mod pdu;
pub mod receive;
pub mod remote_server_keys;
pub mod resolver;
pub mod retry;
pub mod sender;
pub mod serve;

// What other areas use of the federation area's inner files (its door, with the face).
pub use client::{owned, remote_error};
pub use invite::STRIPPED_TYPES;
pub use receive::acl_allows;
pub use sender::room_servers;
pub use serve::MAX_FROM_EVENTS;

use std::{sync::Arc, time::Duration};

use ruma::ServerName;

use crate::{
    config::FederationConfig,
    services::outbound::{GuardedDns, IpPolicy},
};

pub struct Federation {
    pub resolver: resolver::Resolver,
    /// For signed requests to other servers (DNS through the resolver's pins and the outbound
    /// address policy; no redirects).
    pub http: reqwest::Client,
    /// For `/.well-known/matrix/server`, which may redirect (spec): each hop under the same
    /// address policy, at most 3.
    pub well_known_http: reqwest::Client,
    /// The addresses federation may connect to (`[outbound]`).
    pub ip_policy: Arc<IpPolicy>,
    pub queues: sender::Queues,
    /// The extra certificate authorities trusted for federation TLS (`extra_ca_file`), for the
    /// other clients that talk to federation peers (media `Location` redirects).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Limits on fetching other servers' keys (negative cache, backoff, one fetch at a time).
    pub key_fetch: key_fetch::KeyFetchLimits,
}

impl Federation {
    pub fn new(cfg: &FederationConfig, ip_policy: Arc<IpPolicy>) -> anyhow::Result<Self> {
        let resolver = resolver::Resolver::new(cfg.resolve_overrides.clone().into_iter().collect());
        let mut extra_roots = vec![];
        if let Some(path) = &cfg.extra_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("federation.extra_ca_file {}: {e}", path.display()))?;
            extra_roots = reqwest::Certificate::from_pem_bundle(&pem)?;
        }
        if cfg.insecure_skip_tls_verify {
            tracing::warn!(
                "federation.insecure_skip_tls_verify is on: other servers' certificates are NOT checked (tests only)"
            );
        }
        let builder = |redirect: reqwest::redirect::Policy| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .redirect(redirect)
                .user_agent(concat!("Palabre/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(Arc::new(GuardedDns {
                    pinned: resolver.pinned.clone(),
                    policy: ip_policy.clone(),
                }));
            for cert in &extra_roots {
                b = b.add_root_certificate(cert.clone());
            }
            if cfg.insecure_skip_tls_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            b.build()
        };
        let hop_policy = ip_policy.clone();
        let well_known_redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                attempt.stop()
            } else if attempt.url().scheme() != "https" || !hop_policy.url_allowed(attempt.url()) {
                attempt.error(Refused)
            } else {
                attempt.follow()
            }
        });
        Ok(Self {
            http: builder(reqwest::redirect::Policy::none())?,
            well_known_http: builder(well_known_redirects)?,
            ip_policy,
            resolver,
            queues: sender::Queues::default(),
            extra_roots,
            key_fetch: key_fetch::KeyFetchLimits::default(),
        })
    }
}

/// A redirect to an address the policy refuses (or away from https).
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redirect refused")
    }
}

impl std::error::Error for Refused {}

/// Whether this server may talk to `server` (federation on, and on the allow-list if any).
pub fn allowed(cfg: &FederationConfig, server: &ServerName) -> bool {
    cfg.enabled
        && cfg
            .allow_list
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == server.as_str()))
}
