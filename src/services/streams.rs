//! Stream positions (the backbone of sync tokens) and the notifier that wakes long-polls.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

/// Hands out stream positions and tracks the highest position below which every position is
/// persisted (or abandoned), so a reader never skips a position still being written.
pub struct StreamTracker {
    inner: Mutex<(i64, BTreeSet<i64>)>,
    current: AtomicI64,
}

impl StreamTracker {
    pub fn new(max_persisted: i64) -> Self {
        Self {
            inner: Mutex::new((max_persisted + 1, BTreeSet::new())),
            current: AtomicI64::new(max_persisted),
        }
    }

    /// Reserves `n` consecutive positions.
    pub fn allocate(&self, n: usize) -> Vec<i64> {
        let mut g = self.inner.lock();
        let start = g.0;
        g.0 += n as i64;
        let ids: Vec<i64> = (start..start + n as i64).collect();
        g.1.extend(ids.iter().copied());
        ids
    }

    /// Marks positions done (written or abandoned) and advances the readable position.
    pub fn complete(&self, ids: &[i64]) {
        let mut g = self.inner.lock();
        for id in ids {
            g.1.remove(id);
        }
        let cur = match g.1.first() {
            Some(min) => min - 1,
            None => g.0 - 1,
        };
        self.current.store(cur, Ordering::Release);
    }

    /// Every position up to this one is readable.
    pub fn current(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }
}

/// Wakes the long-polling `/sync` requests of the users concerned by a change, and only them.
#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, Arc<Notify>>>,
}

impl Notifier {
    /// The handle a sync request waits on. Create the `notified()` future before checking for
    /// new data so no wake-up is missed.
    pub fn handle(&self, user: &UserId) -> Arc<Notify> {
        self.users
            .lock()
            .entry(user.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    pub fn notify<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) {
        let map = self.users.lock();
        for u in users {
            if let Some(n) = map.get(u) {
                n.notify_waiters();
            }
        }
    }

    /// Drops handles nobody waits on (called periodically).
    pub fn prune(&self) {
        self.users.lock().retain(|_, n| Arc::strong_count(n) > 1);
    }
}
