//! Where this server may connect, and how much of an answer it reads.
//!
//! Every outbound HTTP request (federation, well-known, key fetches, the notary, pushers,
//! remote media, URL previews) goes to an address judged by an [`IpPolicy`]: Synapse's
//! `ip_range_blacklist` ranges (loopback, private, link-local, CGNAT, ULA, NAT64, 6to4,
//! multicast, documentation…) are refused unless an operator allow-lists them
//! (`[outbound] ip_range_allowlist`, for a closed federation on a private network). Names are
//! judged after resolution, on every address the connection may use ([`GuardedDns`], the HTTP
//! clients' DNS hook, so SRV targets, well-known delegations and test overrides all pass
//! through it); IP literals, which the HTTP client connects to without resolving, are judged
//! before the request ([`IpPolicy::url_allowed`]). Answers are read through [`read_capped`],
//! never whole before their size is known.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use futures_util::StreamExt;

/// An address range, `addr/len` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or an addr/len range");
        let (net, len) = match s.trim().split_once('/') {
            Some((n, l)) => (n, Some(l)),
            None => (s.trim(), None),
        };
        let net: IpAddr = net.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { net, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical(ip), self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) are the
/// IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn parse_all(ranges: &[String]) -> Result<Vec<Cidr>, String> {
    ranges.iter().map(|r| Cidr::parse(r)).collect()
}

/// Which addresses may be connected to: anything allow-listed, else anything not denied.
#[derive(Debug, Default)]
pub struct IpPolicy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl IpPolicy {
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        Ok(Self {
            allow: parse_all(allow)?,
            deny: parse_all(deny)?,
        })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.iter().any(|c| c.contains(ip)) || !self.deny.iter().any(|c| c.contains(ip))
    }

    /// Whether a URL may be requested as far as its host alone tells: an IP literal is judged
    /// here (the HTTP client connects to it without asking the DNS hook); a name is judged
    /// by [`GuardedDns`] on what it resolves to.
    pub fn url_allowed(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.allows(ip),
            Err(_) => true,
        }
    }
}

/// The policies of this server's outbound requests, built once from the configuration.
#[derive(Debug)]
pub struct Outbound {
    /// Federation (requests, well-known, keys, the notary) and pushers:
    /// `[outbound] ip_range_allowlist` over `ip_range_denylist`.
    pub general: Arc<IpPolicy>,
    /// URL previews: `media.url_preview.ip_allow_list` over the deny list (the federation
    /// allow-list does not open a ministry's intranet to its users' previews).
    pub previews: IpPolicy,
    /// Media `Location` redirects given by other servers: `media.redirect_ip_allow_list` and
    /// the federation allow-list over the deny list.
    pub media_redirects: IpPolicy,
}

impl Outbound {
    pub fn new(config: &crate::config::Config) -> Result<Self, String> {
        let o = &config.outbound;
        let tagged = |what: &str, e: String| format!("{what}: {e}");
        let general = IpPolicy::new(&o.ip_range_allowlist, &o.ip_range_denylist)
            .map_err(|e| tagged("outbound", e))?;
        let previews = IpPolicy::new(
            &config.media.url_preview.ip_allow_list,
            &o.ip_range_denylist,
        )
        .map_err(|e| tagged("media.url_preview.ip_allow_list", e))?;
        let redirect_allow: Vec<String> = config
            .media
            .redirect_ip_allow_list
            .iter()
            .chain(&o.ip_range_allowlist)
            .cloned()
            .collect();
        let media_redirects = IpPolicy::new(&redirect_allow, &o.ip_range_denylist)
            .map_err(|e| tagged("media.redirect_ip_allow_list", e))?;
        Ok(Self {
            general: Arc::new(general),
            previews,
            media_redirects,
        })
    }
}

/// Host names whose addresses are fixed by discovery (SRV targets, test overrides).
#[derive(Default)]
pub struct Pinned(parking_lot::Mutex<std::collections::HashMap<String, Vec<SocketAddr>>>);

impl Pinned {
    /// Fixes the addresses of a host name (discovery found them).
    pub fn pin(&self, host: String, addrs: Vec<SocketAddr>) {
        self.0.lock().insert(host, addrs);
    }

    /// The addresses discovery fixed for a host name, if any.
    pub fn get(&self, host: &str) -> Option<Vec<SocketAddr>> {
        self.0.lock().get(host).cloned()
    }
}

/// The HTTP clients' DNS hook: the name's pinned addresses (SRV targets, test overrides) or
/// the system resolver's, keeping only those the policy allows; none left is a failure, so
/// that a name pointing at a private address is never connected to.
pub struct GuardedDns {
    pub pinned: Arc<Pinned>,
    pub policy: Arc<IpPolicy>,
}

/// The error the DNS hook gives for a name whose addresses are all refused.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no allowed address")
    }
}

impl std::error::Error for Refused {}

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let pinned = self.pinned.get(name.as_str());
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match pinned {
                Some(a) => a,
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                    .collect(),
            };
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                tracing::info!(
                    host = name.as_str(),
                    "outbound request to a refused address"
                );
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the cap (by its Content-Length or as it streamed in).
    TooLarge,
    /// The connection failed or timed out mid-body.
    Failed(reqwest::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("answer too large"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Reads an answer's body, stopping as soon as it passes `max` bytes (a missing or lying
/// Content-Length never makes this hold more than `max` plus one chunk).
pub async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Failed)?;
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_policy() {
        let deny: Vec<String> = crate::config::DEFAULT_IP_RANGE_DENYLIST
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = IpPolicy::new(&[], &deny).unwrap();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "ff02::1",
            "224.0.0.1",
        ] {
            assert!(!p.allows(ip(bad)), "{bad}");
        }
        for good in ["8.8.8.8", "2a00:1450::1", "193.50.1.1"] {
            assert!(p.allows(ip(good)), "{good}");
        }
        let open = IpPolicy::new(&["10.0.0.0/8".into()], &deny).unwrap();
        assert!(open.allows(ip("10.2.3.4")));
        assert!(!open.allows(ip("192.168.0.1")));
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(!p.url_allowed(&url("https://127.0.0.1:8448/x")));
        assert!(!p.url_allowed(&url("https://[::1]:8448/x")));
        assert!(p.url_allowed(&url("https://example.org/x")));
        assert!(open.url_allowed(&url("http://10.0.0.1/")));
    }
}
