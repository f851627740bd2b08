//! Who the client is, network-wise: the socket peer, or — when the peer is one of the
//! `[proxy] trusted_proxies` — the address the proxies recorded in `X-Forwarded-For`.
//!
//! The client is the right-most `X-Forwarded-For` address that is not a trusted proxy: every
//! address to its right was appended by a proxy we trust, and anything to its left was written
//! by the client itself (so prepending addresses never moves a client out of its bucket).
//! The header of an untrusted peer is ignored.

use std::net::IpAddr;

use super::outbound::{canonical, Cidr};

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The configured reverse proxies.
#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

/// What the connection says about its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address (the socket peer unless a trusted proxy forwarded the request).
    pub ip: IpAddr,
    /// The socket peer is a trusted proxy: the request came through it.
    pub via_proxy: bool,
}

impl TrustedProxies {
    pub fn new(ranges: &[String]) -> Result<Self, String> {
        ranges
            .iter()
            .map(|r| Cidr::parse(r))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client behind `socket`, given the request's `X-Forwarded-For` headers (in order).
    pub fn resolve<'a>(&self, socket: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> Peer {
        let socket = canonical(socket);
        if !self.trusted(socket) {
            return Peer {
                ip: socket,
                via_proxy: false,
            };
        }
        let entries: Vec<&str> = forwarded.flat_map(|h| h.split(',')).collect();
        // Right to left: the last trusted hop vouches for the address on its left.
        let mut client = socket;
        for e in entries.iter().rev() {
            let Some(ip) = parse_entry(e).map(canonical) else {
                // Unreadable: nothing to its left can be believed either.
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        Peer {
            ip: client,
            via_proxy: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for() {
        let t = TrustedProxies::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let r = |socket: &str, h: &[&str]| t.resolve(ip(socket), h.iter().copied()).ip;
        // Untrusted peer: header ignored.
        assert_eq!(r("203.0.113.1", &["198.51.100.7"]), ip("203.0.113.1"));
        // Trusted peer: the right-most untrusted address.
        assert_eq!(r("127.0.0.1", &["198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(
            r("127.0.0.1", &["6.6.6.6, 198.51.100.7, 10.1.1.1"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            r("127.0.0.1", &["6.6.6.6", "198.51.100.7:4431"]),
            ip("198.51.100.7")
        );
        assert_eq!(r("127.0.0.1", &["[2001:db8::1]:80"]), ip("2001:db8::1"));
        // No header, or only proxies: the last proxy seen.
        assert_eq!(r("127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(r("127.0.0.1", &["10.2.2.2"]), ip("10.2.2.2"));
        // Garbage stops the walk at the last believable hop.
        assert_eq!(r("127.0.0.1", &["1.1.1.1, junk"]), ip("127.0.0.1"));
        assert!(t.resolve(ip("127.0.0.1"), std::iter::empty()).via_proxy);
        assert!(!t.resolve(ip("127.0.0.2"), std::iter::empty()).via_proxy);
    }
}
