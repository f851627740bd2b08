//! Readiness: whether this process should be sent requests. It is not ready while it drains
//! (a stop has begun: a load balancer must stop sending first) or when the database does not
//! answer. Answers are kept one second, so a load balancer polling many times a second costs
//! the database one query a second.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::store::Db;

/// How long one database check may take before the process counts as not ready.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// From now on readiness answers "not ready" (the process is stopping).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Ok` when ready; otherwise why not.
    pub async fn ready(&self, db: &Db) -> Result<(), String> {
        if self.draining() {
            return Err("draining".into());
        }
        // One check at a time: concurrent callers wait for it and share its answer.
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return answer.clone();
            }
        }
        let answer = match tokio::time::timeout(PING_TIMEOUT, db.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("database: {e}")),
            Err(_) => Err("database: no answer within 2 s".into()),
        };
        if let Err(e) = &answer {
            tracing::warn!(reason = %e, "not ready");
        }
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}
