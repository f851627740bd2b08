//! Stream positions (the backbone of sync tokens) and the notifier that wakes long-polls.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use crate::{Error, Result};
use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

/// Hands out stream positions and tracks the highest position below which every position is
/// persisted (or abandoned), so a reader never skips a position still being written.
///
/// A position reaches clients (in sync tokens, through `current`) only once it is durable: its
/// write committed ([`StreamTracker::complete`]), or, when the write failed or rolled back, once
/// the stream's recorded head (`stream_heads`) has been raised past it
/// ([`Services::abandon_positions`]). A restart starts after max(rows, recorded head), so a
/// position a client has seen is never handed out again.
pub struct StreamTracker {
    /// The stream's name in `stream_heads`.
    pub name: &'static str,
    inner: Mutex<Inner>,
    current: AtomicI64,
}

struct Inner {
    next: i64,
    pending: BTreeSet<i64>,
    /// Wake-ups held back until `current` reaches their position: a reader woken earlier would
    /// not see the write yet and would go back to sleep.
    deferred: Vec<(i64, Vec<OwnedUserId>)>,
}

impl StreamTracker {
    pub fn new(name: &'static str, max_persisted: i64) -> Self {
        Self {
            name,
            inner: Mutex::new(Inner {
                next: max_persisted + 1,
                pending: BTreeSet::new(),
                deferred: vec![],
            }),
            current: AtomicI64::new(max_persisted),
        }
    }

    /// Reserves `n` consecutive positions.
    pub fn allocate(&self, n: usize) -> Vec<i64> {
        let mut g = self.inner.lock();
        let start = g.next;
        g.next += n as i64;
        let ids: Vec<i64> = (start..start + n as i64).collect();
        g.pending.extend(ids.iter().copied());
        ids
    }

    /// Marks positions done (written or abandoned) and advances the readable position. Returns
    /// the users to wake now: `wake` once its positions are readable, and any earlier writer's
    /// users this completion made readable.
    pub fn complete(&self, ids: &[i64], wake: Vec<OwnedUserId>) -> Vec<OwnedUserId> {
        let mut g = self.inner.lock();
        for id in ids {
            g.pending.remove(id);
        }
        let cur = match g.pending.first() {
            Some(min) => min - 1,
            None => g.next - 1,
        };
        self.current.store(cur, Ordering::Release);
        let mine = ids.iter().copied().max().unwrap_or(0);
        if !wake.is_empty() {
            g.deferred.push((mine, wake));
        }
        let mut ready = vec![];
        g.deferred.retain_mut(|(pos, users)| {
            if *pos <= cur {
                ready.append(users);
                false
            } else {
                true
            }
        });
        ready
    }

    /// Every position up to this one is readable.
    pub fn current(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }
}

impl crate::services::Services {
    /// Positions whose write failed or rolled back: the stream's recorded head is raised past
    /// them (retried in the background until the database takes it) before they count as done,
    /// so that no client is given a position that a restart would hand out again. The stream's
    /// readers wait at the position before them meanwhile.
    pub fn abandon_positions(&self, pick: fn(&Self) -> &StreamTracker, ids: Vec<i64>) {
        let Some(max) = ids.iter().copied().max() else {
            return;
        };
        let weak = self.me.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(50);
            loop {
                let Some(s) = weak.upgrade() else { return };
                let tracker = pick(&s);
                match s.db.raise_stream_head_now(tracker.name, max).await {
                    Ok(()) => {
                        let ready = tracker.complete(&ids, vec![]);
                        s.notifier.notify(ready.iter().map(|u| -> &UserId { u }));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(stream = tracker.name, error = %e, "cannot record an abandoned stream position; retrying");
                    }
                }
                drop(s);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        });
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

/// The `since`/`next_batch` token of `/sync`: one position per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub presence: i64,
    pub to_device: i64,
    pub device_lists: i64,
    pub receipts: i64,
    pub typing: i64,
}

impl SyncToken {
    /// `s<events>_<account_data>[_<presence>[_<to_device>_<device_lists>[_<receipts>_<typing>]]]`
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid_param("Invalid sync token");
        let rest = s.strip_prefix('s').ok_or_else(bad)?;
        let parts: Vec<i64> = rest
            .split('_')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        if parts.iter().any(|p| *p < 0) {
            return Err(bad());
        }
        let mut all = [0i64; 7];
        if !matches!(parts.len(), 2 | 3 | 5 | 7) {
            return Err(bad());
        }
        all[..parts.len()].copy_from_slice(&parts);
        let [events, account_data, presence, to_device, device_lists, receipts, typing] = all;
        Ok(Self {
            events,
            account_data,
            presence,
            to_device,
            device_lists,
            receipts,
            typing,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}",
            self.events,
            self.account_data,
            self.presence,
            self.to_device,
            self.device_lists,
            self.receipts,
            self.typing
        )
    }
}

/// A pagination position: `t<n>` (from /messages) or a sync token (its event part).
pub fn parse_position(s: &str) -> Result<i64> {
    if let Some(n) = s.strip_prefix('t') {
        return n
            .parse()
            .map_err(|_| Error::invalid_param("Invalid pagination token"));
    }
    Ok(SyncToken::parse(s)?.events)
}
