//! Bounds on what other servers' requests may cost this one (`[inbound_federation]`): the
//! largest body per route, and requests handled at once per origin server.
//!
//! The order in which a request is taken (api/federation/auth.rs): the `X-Matrix` header is
//! parsed, its origin allowed, its declared length checked against the route's cap, the
//! origin's key fetched — all before a byte of the body is read — then a per-origin slot is
//! taken, the body read through the cap with a deadline, and only then the signature checked
//! (it covers the body).

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use ruma::{OwnedServerName, ServerName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::InboundFederationConfig;

/// The transaction route, the only one allowed the large cap.
pub const SEND_ROUTE: &str = "/_matrix/federation/v1/send/{txn}";

/// Origins tracked at once; past it, idle ones are forgotten, and if all are busy a new origin
/// is refused (429) rather than grow the map.
const MAX_ORIGINS: usize = 10_000;

/// Largest body accepted on the route `matched` (the router's path template).
pub fn body_cap(cfg: &InboundFederationConfig, matched: Option<&str>) -> usize {
    if matched == Some(SEND_ROUTE) {
        cfg.max_transaction_bytes
    } else {
        cfg.max_request_bytes
    }
}

/// One semaphore per origin server.
#[derive(Default)]
pub struct InboundLimits {
    origins: Mutex<HashMap<OwnedServerName, Arc<Semaphore>>>,
}

impl InboundLimits {
    /// A slot for one request of `origin`, held as long as the permit lives; None when
    /// `origin` already has `max` requests in hand (or too many origins are busy).
    /// `max == 0`: no bound (a permit of a throwaway semaphore).
    pub fn try_acquire(&self, origin: &ServerName, max: usize) -> Option<OwnedSemaphorePermit> {
        if max == 0 {
            return Arc::new(Semaphore::new(1)).try_acquire_owned().ok();
        }
        let sem = {
            let mut map = self.origins.lock();
            if !map.contains_key(origin) && map.len() >= MAX_ORIGINS {
                // An idle origin's semaphore is only referenced by the map.
                map.retain(|_, s| Arc::strong_count(s) > 1);
                if map.len() >= MAX_ORIGINS {
                    return None;
                }
            }
            map.entry(origin.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        sem.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_origin_slots() {
        let l = InboundLimits::default();
        let a = ServerName::parse("a.example").unwrap();
        let b = ServerName::parse("b.example").unwrap();
        let p1 = l.try_acquire(&a, 2).unwrap();
        let _p2 = l.try_acquire(&a, 2).unwrap();
        assert!(l.try_acquire(&a, 2).is_none());
        assert!(l.try_acquire(&b, 2).is_some(), "origins are independent");
        drop(p1);
        assert!(l.try_acquire(&a, 2).is_some(), "a slot comes back");
        assert!(l.try_acquire(&a, 0).is_some());
    }
}
