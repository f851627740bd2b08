//! Limits on fetching other servers' keys, so that made-up key ids (in X-Matrix headers or PDU
//! signatures, from any claimed origin) cannot make this server hammer a victim or itself:
//! - a key id a fetch did not give is remembered as missing for `MISS_TTL`;
//! - a server is fetched at most once per `MIN_INTERVAL`, and after failures only after an
//!   exponential backoff (up to `MAX_BACKOFF`);
//! - concurrent fetches of one server are one fetch (the others wait and read the cache);
//! - at most `MAX_KEY_IDS_PER_SERVER` key ids of one server are tried per signature.
//!
//! Everything is in memory and bounded (`MAX_ENTRIES` per map).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

/// A key id a fetch did not give is not asked for again for this long.
const MISS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches of one server's keys.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Entries kept per map before expired ones are dropped (and, if still full, all).
const MAX_ENTRIES: usize = 10_000;
/// Key ids of one server tried for one signature.
pub const MAX_KEY_IDS_PER_SERVER: usize = 4;

#[derive(Default)]
pub struct KeyFetchLimits {
    misses: Mutex<HashMap<(String, String), Instant>>,
    /// Per server: consecutive failures and when the next fetch is allowed.
    next_fetch: Mutex<HashMap<String, (u32, Instant)>>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn bound<K, V>(map: &mut HashMap<K, V>, expired: impl Fn(&V) -> bool) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| !expired(v));
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

/// Holds a server's fetch slot; dropping it frees the slot.
pub struct FetchSlot<'a> {
    limits: &'a KeyFetchLimits,
    server: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for FetchSlot<'_> {
    fn drop(&mut self) {
        self._guard = None;
        let mut inflight = self.limits.inflight.lock();
        // The map's copy and ours: nobody else waits.
        if Arc::strong_count(&self.lock) == 2 {
            inflight.remove(&self.server);
        }
    }
}

impl KeyFetchLimits {
    /// Whether `key_id` of `server` was recently missing from a fetch.
    pub fn known_missing(&self, server: &str, key_id: &str) -> bool {
        let now = Instant::now();
        self.misses
            .lock()
            .get(&(server.to_owned(), key_id.to_owned()))
            .is_some_and(|t| now < *t)
    }

    /// Remembers key ids a fetch of `server` did not give.
    pub fn remember_missing(&self, server: &str, key_ids: &[String]) {
        let now = Instant::now();
        let mut misses = self.misses.lock();
        bound(&mut misses, |t| *t <= now);
        for id in key_ids {
            misses.insert((server.to_owned(), id.clone()), now + MISS_TTL);
        }
    }

    /// Whether `server` may be fetched now.
    pub fn may_fetch(&self, server: &str) -> bool {
        self.next_fetch
            .lock()
            .get(server)
            .is_none_or(|(_, at)| Instant::now() >= *at)
    }

    /// Records a fetch of `server` and its outcome.
    pub fn fetched(&self, server: &str, ok: bool) {
        let now = Instant::now();
        let mut next = self.next_fetch.lock();
        bound(&mut next, |(_, at)| *at <= now);
        let failures = if ok {
            0
        } else {
            next.get(server).map_or(0, |(f, _)| *f).saturating_add(1)
        };
        let wait = if failures == 0 {
            MIN_INTERVAL
        } else {
            MIN_INTERVAL
                .saturating_mul(1 << failures.min(10))
                .min(MAX_BACKOFF)
        };
        next.insert(server.to_owned(), (failures, now + wait));
    }

    /// Waits for the right to fetch `server`'s keys: one fetch per server at a time.
    pub async fn slot(&self, server: &str) -> FetchSlot<'_> {
        let lock = self
            .inflight
            .lock()
            .entry(server.to_owned())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        FetchSlot {
            limits: self,
            server: server.to_owned(),
            lock,
            _guard: Some(guard),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_and_backoff() {
        let l = KeyFetchLimits::default();
        assert!(!l.known_missing("a.org", "ed25519:x"));
        l.remember_missing("a.org", &["ed25519:x".into()]);
        assert!(l.known_missing("a.org", "ed25519:x"));
        assert!(!l.known_missing("b.org", "ed25519:x"));
        assert!(l.may_fetch("a.org"));
        l.fetched("a.org", false);
        assert!(!l.may_fetch("a.org"));
        assert!(l.may_fetch("b.org"));
    }
}
