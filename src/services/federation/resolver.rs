//! Server discovery (spec: Server-server API, Resolving server names): IP literals, explicit
//! ports, `/.well-known/matrix/server` (cached as its headers say), SRV `_matrix-fed._tcp` then
//! `_matrix._tcp`, and port 8448. The result is a base URL whose host is the name the TLS
//! certificate must carry; when the connection must go elsewhere (SRV target, test override)
//! the host is pinned to those addresses in the HTTP clients' DNS hook
//! (`outbound::GuardedDns`, which also refuses addresses the operator did not allow).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;

use crate::services::outbound::Pinned;
use parking_lot::Mutex;
use ruma::ServerName;

/// Where to send requests for a server name.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `https://host:port`
    pub base_url: String,
}

/// Largest `/.well-known/matrix/server` answer read.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;

/// Well-known results are kept this long when the response says nothing.
const WELL_KNOWN_DEFAULT: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN_MAX: Duration = Duration::from_secs(48 * 3600);
/// Failed well-known lookups are retried after this.
const WELL_KNOWN_ERROR: Duration = Duration::from_secs(3600);
/// Whole resolutions (SRV included) are kept this long.
const RESOLVED_TTL: Duration = Duration::from_secs(3600);

pub struct Resolver {
    dns: Option<TokioResolver>,
    overrides: HashMap<String, String>,
    pub pinned: Arc<Pinned>,
    well_known: Mutex<HashMap<String, (Instant, Option<String>)>>,
    resolved: Mutex<HashMap<String, (Instant, Destination)>>,
}

fn split_host_port(s: &str) -> (String, Option<u16>) {
    // IPv6 literals are bracketed: [::1]:8448
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_owned(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_owned(), Some(port)),
            Err(_) => (s.to_owned(), None),
        },
        _ => (s.to_owned(), None),
    }
}

fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_owned(),
    }
}

/// `max-age` of a Cache-Control header, bounded.
fn cache_for(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|d| {
                d.trim()
                    .strip_prefix("max-age=")
                    .and_then(|n| n.parse::<u64>().ok())
            })
        })
        .map(|s| Duration::from_secs(s).min(WELL_KNOWN_MAX))
        .unwrap_or(WELL_KNOWN_DEFAULT)
}

impl Resolver {
    pub fn new(overrides: HashMap<String, String>) -> Self {
        let dns = match TokioResolver::builder_tokio() {
            Ok(b) => Some(b.build()),
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration: SRV lookups disabled");
                None
            }
        };
        Self {
            dns,
            overrides,
            pinned: Arc::default(),
            well_known: Mutex::default(),
            resolved: Mutex::default(),
        }
    }

    /// The base URL for a server name, following the spec's discovery steps.
    pub async fn resolve(&self, server: &ServerName, http: &reqwest::Client) -> Destination {
        let key = server.as_str().to_owned();
        if let Some((until, d)) = self.resolved.lock().get(&key) {
            if *until > Instant::now() {
                return d.clone();
            }
        }
        let d = self.discover(server, http).await;
        self.resolved
            .lock()
            .insert(key, (Instant::now() + RESOLVED_TTL, d.clone()));
        d
    }

    async fn discover(&self, server: &ServerName, http: &reqwest::Client) -> Destination {
        let (host, port) = split_host_port(server.as_str());
        // Tests: a fixed address for this server name.
        if let Some(target) = self.overrides.get(server.as_str()) {
            let (thost, tport) = split_host_port(target);
            let tport = tport.unwrap_or(8448);
            if let Some(addrs) = lookup(&thost, tport).await {
                self.pinned.pin(host.clone(), addrs);
            }
            return Destination {
                base_url: format!("https://{}:{tport}", url_host(&host)),
            };
        }
        // 1. IP literal; 2. explicit port.
        if host.parse::<IpAddr>().is_ok() || port.is_some() {
            return Destination {
                base_url: format!("https://{}:{}", url_host(&host), port.unwrap_or(8448)),
            };
        }
        // 3. Delegation by /.well-known/matrix/server.
        let (target, tport) = match self.well_known(&host, http).await {
            Some(delegated) => {
                let (dhost, dport) = split_host_port(&delegated);
                if dhost.parse::<IpAddr>().is_ok() || dport.is_some() {
                    return Destination {
                        base_url: format!("https://{}:{}", url_host(&dhost), dport.unwrap_or(8448)),
                    };
                }
                (dhost, None::<u16>)
            }
            None => (host, None),
        };
        // 4. SRV records (new name first), 5. port 8448.
        if let Some((srv_host, srv_port)) = self.srv(&target).await {
            if let Some(addrs) = lookup(&srv_host, srv_port).await {
                self.pinned.pin(target.clone(), addrs);
            }
            return Destination {
                base_url: format!("https://{}:{srv_port}", url_host(&target)),
            };
        }
        Destination {
            base_url: format!("https://{}:{}", url_host(&target), tport.unwrap_or(8448)),
        }
    }

    async fn well_known(&self, host: &str, http: &reqwest::Client) -> Option<String> {
        if let Some((until, v)) = self.well_known.lock().get(host) {
            if *until > Instant::now() {
                return v.clone();
            }
        }
        let url = format!("https://{}/.well-known/matrix/server", url_host(host));
        let res = http.get(&url).timeout(Duration::from_secs(10)).send().await;
        let (ttl, value) = match res {
            Ok(r) if r.status().is_success() => {
                let ttl = cache_for(r.headers());
                let body: serde_json::Value =
                    match crate::services::outbound::read_capped(r, WELL_KNOWN_MAX_BYTES).await {
                        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                        Err(_) => serde_json::Value::Null,
                    };
                match body.get("m.server").and_then(|v| v.as_str()) {
                    Some(s) if !s.is_empty() && ServerName::parse(s).is_ok() => {
                        (ttl, Some(s.to_owned()))
                    }
                    _ => (WELL_KNOWN_ERROR, None),
                }
            }
            _ => (WELL_KNOWN_ERROR, None),
        };
        self.well_known
            .lock()
            .insert(host.to_owned(), (Instant::now() + ttl, value.clone()));
        value
    }

    async fn srv(&self, host: &str) -> Option<(String, u16)> {
        let dns = self.dns.as_ref()?;
        for prefix in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Ok(records) = dns.srv_lookup(format!("{prefix}.{host}.")).await {
                if let Some(best) = records
                    .iter()
                    .min_by_key(|r| (r.priority(), u16::MAX - r.weight()))
                {
                    let target = best.target().to_utf8();
                    return Some((target.trim_end_matches('.').to_owned(), best.port()));
                }
            }
        }
        None
    }
}

async fn lookup(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await.ok()?.collect();
    (!addrs.is_empty()).then_some(addrs)
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("example.org"), ("example.org".into(), None));
        assert_eq!(
            split_host_port("example.org:8000"),
            ("example.org".into(), Some(8000))
        );
        assert_eq!(split_host_port("[::1]:8448"), ("::1".into(), Some(8448)));
        assert_eq!(split_host_port("[::1]"), ("::1".into(), None));
        assert_eq!(split_host_port("1.2.3.4:5"), ("1.2.3.4".into(), Some(5)));
    }
}
