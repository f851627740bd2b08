//! Token-bucket rate limiting keyed by (action, requester).

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;

use crate::{config::RateLimit, Error, Result};

/// (action, requester) -> (tokens left, last refill)
type Buckets = HashMap<(&'static str, String), (f64, Instant)>;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// Takes one token for `key` under `limit`, or answers M_LIMIT_EXCEEDED with the wait.
    pub fn check(&self, action: &'static str, key: &str, limit: RateLimit) -> Result<()> {
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock();
        if map.len() > 100_000 {
            // Forget full buckets so the map cannot grow without bound.
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * limit.per_second < limit.burst
            });
        }
        let entry = map
            .entry((action, key.to_owned()))
            .or_insert((limit.burst, now));
        let refill = now.duration_since(entry.1).as_secs_f64() * limit.per_second;
        entry.0 = (entry.0 + refill).min(limit.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - entry.0) / limit.per_second * 1000.0).ceil() as u64;
            Err(Error::limit_exceeded(wait.max(1)))
        }
    }
}
