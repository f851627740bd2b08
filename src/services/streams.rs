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
///
/// On PostgreSQL the stream is shared by every node of the cluster: positions are taken from the
/// database ([`Services::take_positions`]) and `current` is what the database says is persisted
/// up to ([`StreamTracker::advance_to`], read again on every notice of any node); wake-ups come
/// with the notices and wait here until `current` reaches them.
pub struct StreamTracker {
    /// The stream's name in `stream_heads` and `stream_counters`.
    pub name: &'static str,
    inner: Mutex<Inner>,
    current: AtomicI64,
    /// Positions come from the database, shared by the nodes of a cluster.
    pub shared: bool,
    /// Shared: a notice came, the database's "persisted up to" is to be read again.
    pub stale: Arc<Notify>,
    /// Shared: `current` moved.
    advanced: Notify,
}

/// Who a wake-up is for: these users, or (`None`) every user waiting on this node.
pub type Wake = Option<Vec<OwnedUserId>>;

/// The users to wake now.
#[derive(Default)]
pub struct Ready {
    pub users: Vec<OwnedUserId>,
    /// Every waiting user (a wake-up too big to name them).
    pub all: bool,
}

struct Inner {
    next: i64,
    pending: BTreeSet<i64>,
    /// Wake-ups held back until `current` reaches their position: a reader woken earlier would
    /// not see the write yet and would go back to sleep.
    deferred: Vec<(i64, Wake)>,
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
            shared: false,
            stale: Arc::new(Notify::new()),
            advanced: Notify::new(),
        }
    }

    /// A stream shared with other nodes, persisted up to `upto` now.
    pub fn shared(name: &'static str, upto: i64) -> Self {
        Self {
            shared: true,
            ..Self::new(name, upto)
        }
    }

    /// Reserves `n` consecutive positions (a stream of this process only).
    pub fn allocate(&self, n: usize) -> Vec<i64> {
        debug_assert!(
            !self.shared,
            "shared streams take positions from the database"
        );
        let mut g = self.inner.lock();
        let start = g.next;
        g.next += n as i64;
        let ids: Vec<i64> = (start..start + n as i64).collect();
        g.pending.extend(ids.iter().copied());
        ids
    }

    /// Marks positions done (written or abandoned) and advances the readable position. Returns
    /// the users to wake now: `wake` once its positions are readable, and any earlier writer's
    /// users this completion made readable. On a shared stream the write's notice does this
    /// (every node, this one included, reads the new position when it comes).
    pub fn complete(&self, ids: &[i64], wake: Vec<OwnedUserId>) -> Ready {
        if self.shared {
            return Ready::default();
        }
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
            g.deferred.push((mine, Some(wake)));
        }
        Self::take_ready(&mut g, cur)
    }

    /// Shared: a wake-up from a notice, for when `current` reaches `pos`.
    pub fn defer(&self, pos: i64, wake: Wake) -> Ready {
        let mut g = self.inner.lock();
        g.deferred.push((pos, wake));
        Self::take_ready(&mut g, self.current())
    }

    /// Shared: the database says every position up to `upto` is persisted.
    pub fn advance_to(&self, upto: i64) -> Ready {
        let mut g = self.inner.lock();
        let before = self.current.fetch_max(upto, Ordering::AcqRel);
        if upto > before {
            self.advanced.notify_waiters();
        }
        Self::take_ready(&mut g, before.max(upto))
    }

    fn take_ready(g: &mut Inner, cur: i64) -> Ready {
        let mut ready = Ready::default();
        g.deferred.retain_mut(|(pos, wake)| {
            if *pos > cur {
                return true;
            }
            match wake.take() {
                Some(mut users) => ready.users.append(&mut users),
                None => ready.all = true,
            }
            false
        });
        ready
    }

    /// Every position up to this one is readable.
    pub fn current(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }
}

impl crate::services::Services {
    /// Takes `n` positions of a stream: from this process's counter on SQLite, from the
    /// database's on PostgreSQL (recorded as in flight until the write finishes them).
    pub async fn take_positions(
        &self,
        pick: fn(&Self) -> &StreamTracker,
        n: usize,
    ) -> Result<Vec<i64>> {
        let tracker = pick(self);
        if !tracker.shared {
            return Ok(tracker.allocate(n));
        }
        if n == 0 {
            return Ok(vec![]);
        }
        Ok(self
            .db
            .take_positions(tracker.name, n, self.cluster.slot())
            .await?)
    }

    /// [`Self::take_positions`] in the write's own transaction (see `Db::take_positions_tx`).
    pub async fn take_positions_in(
        &self,
        pick: fn(&Self) -> &StreamTracker,
        tx: &mut crate::store::Tx,
        n: usize,
    ) -> Result<Vec<i64>> {
        let tracker = pick(self);
        if !tracker.shared {
            return Ok(tracker.allocate(n));
        }
        if n == 0 {
            return Ok(vec![]);
        }
        Ok(crate::store::Db::take_positions_tx(tx, tracker.name, n, self.cluster.slot()).await?)
    }

    /// What a write that took `ids` does in its transaction on a cluster: finish them and
    /// tell every node whom to wake (`None` on SQLite).
    pub fn finish_of<'a>(
        &self,
        pick: fn(&Self) -> &StreamTracker,
        ids: &'a [i64],
        wake: &[OwnedUserId],
    ) -> Option<crate::store::cluster::Finish<'a>> {
        let tracker = pick(self);
        if !tracker.shared {
            return None;
        }
        let pos = ids.iter().copied().max()?;
        Some(crate::store::cluster::Finish {
            stream: tracker.name,
            ids,
            notice: stream_notice(tracker.name, pos, Some(wake)),
        })
    }

    /// A write that took `ids` committed: wakes the users concerned once the positions are
    /// readable. On a cluster (where the write's notice wakes them, on every node) it also
    /// waits until this node reads its own write, so a client that syncs right after its
    /// request sees what it did (bounded: another node's slower write in flight below may hold
    /// the stream back a moment).
    pub async fn completed(
        &self,
        pick: fn(&Self) -> &StreamTracker,
        ids: &[i64],
        wake: Vec<OwnedUserId>,
    ) {
        let tracker = pick(self);
        if !tracker.shared {
            let ready = tracker.complete(ids, wake);
            self.wake(ready);
            return;
        }
        let Some(mine) = ids.iter().copied().max() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + READ_OWN_WRITE_WAIT;
        loop {
            let moved = tracker.advanced.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if tracker.current() >= mine {
                return;
            }
            match self.db.stream_upto(tracker.name).await {
                Ok(upto) => self.wake(tracker.advance_to(upto)),
                Err(e) => {
                    tracing::warn!(stream = tracker.name, error = %e, "cannot read the stream position")
                }
            }
            if tracker.current() >= mine {
                return;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return;
            }
        }
    }

    /// Wakes the users of `ready`.
    pub fn wake(&self, ready: Ready) {
        if ready.all {
            self.notifier.notify_all();
        } else if !ready.users.is_empty() {
            self.notifier
                .notify(ready.users.iter().map(|u| -> &UserId { u }));
        }
    }

    /// Positions whose write failed or rolled back: the stream's recorded head is raised past
    /// them (retried in the background until the database takes it) before they count as done,
    /// so that no client is given a position that a restart would hand out again. The stream's
    /// readers wait at the position before them meanwhile. On a shared stream they are deleted
    /// from the positions in flight instead (the counter never goes back).
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
                let res = if tracker.shared {
                    let notice = stream_notice(tracker.name, max, None);
                    s.db.drop_positions(tracker.name, &ids, &notice).await
                } else {
                    s.db.raise_stream_head_now(tracker.name, max).await
                };
                match res {
                    Ok(()) => {
                        let ready = tracker.complete(&ids, vec![]);
                        s.wake(ready);
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

/// How long a write on a cluster waits to read itself before answering anyway.
const READ_OWN_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The biggest notification PostgreSQL carries is 8000 bytes.
pub const MAX_NOTICE: usize = 7900;

/// The notice of a write on a stream: its highest position and whom to wake (`None`: nobody,
/// the positions were dropped). A list too long for a notice becomes "everyone".
pub fn stream_notice(stream: &str, pos: i64, wake: Option<&[OwnedUserId]>) -> String {
    let users = wake.unwrap_or(&[]);
    let v = serde_json::json!({"t": "s", "s": stream, "p": pos, "u": users});
    let text = v.to_string();
    if text.len() <= MAX_NOTICE {
        return text;
    }
    serde_json::json!({"t": "s", "s": stream, "p": pos, "all": true}).to_string()
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

    /// Wakes every request waiting on this node.
    pub fn notify_all(&self) {
        for n in self.users.lock().values() {
            n.notify_waiters();
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
    /// Each stream at the higher of the two positions.
    pub fn at_least(self, o: &Self) -> Self {
        Self {
            events: self.events.max(o.events),
            account_data: self.account_data.max(o.account_data),
            presence: self.presence.max(o.presence),
            to_device: self.to_device.max(o.to_device),
            device_lists: self.device_lists.max(o.device_lists),
            receipts: self.receipts.max(o.receipts),
            typing: self.typing.max(o.typing),
        }
    }

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
