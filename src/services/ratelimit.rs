//! Token-bucket rate limiting keyed by (action, requester).

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;

use crate::{config::RateLimit, Error, Result};

/// Buckets kept before full ones are forgotten (and, if that is not enough, the least
/// recently used): a flood of distinct keys cannot grow the map without bound.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
    limit: RateLimit,
}

impl Bucket {
    fn refilled(&self, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst)
    }
}

/// (action, requester) -> bucket
type Buckets = HashMap<(&'static str, String), Bucket>;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// Takes one token for `key` under `limit`, or answers M_LIMIT_EXCEEDED with the wait.
    pub fn check(&self, action: &'static str, key: &str, limit: RateLimit) -> Result<()> {
        self.take(action, key, limit, true)
    }

    /// M_LIMIT_EXCEEDED when `key` has no token left under `limit`; takes nothing. With
    /// [`Self::spend`], a limit on failures only: peek before trying, spend on failure.
    pub fn peek(&self, action: &'static str, key: &str, limit: RateLimit) -> Result<()> {
        self.take(action, key, limit, false)
    }

    /// Takes one token for `key` if there is one left (a failure to count, never refused).
    pub fn spend(&self, action: &'static str, key: &str, limit: RateLimit) {
        let _ = self.take(action, key, limit, true);
    }

    fn take(&self, action: &'static str, key: &str, limit: RateLimit, consume: bool) -> Result<()> {
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock();
        if map.len() > MAX_BUCKETS {
            prune(&mut map, now);
        }
        let entry = map.entry((action, key.to_owned())).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
            limit,
        });
        entry.limit = limit;
        entry.tokens = entry.refilled(now);
        entry.at = now;
        if entry.tokens >= 1.0 {
            if consume {
                entry.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = ((1.0 - entry.tokens) / limit.per_second * 1000.0).ceil() as u64;
            Err(Error::limit_exceeded(wait.max(1)))
        }
    }
}

/// Forgets the buckets that are full again (each by its own limit); if more than half the
/// bound remain, the least recently used go too, down to half: the next prune is then at least
/// `MAX_BUCKETS / 2` new keys away (amortised O(1) per call, whatever the flood).
fn prune(map: &mut Buckets, now: Instant) {
    map.retain(|_, b| b.refilled(now) < b.limit.burst);
    let keep = MAX_BUCKETS / 2;
    if map.len() > keep {
        let mut ats: Vec<Instant> = map.values().map(|b| b.at).collect();
        let drop = ats.len() - keep;
        let (_, cut, _) = ats.select_nth_unstable(drop);
        let cut = *cut;
        map.retain(|_, b| b.at >= cut);
    }
}
