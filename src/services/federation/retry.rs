//! The retry state of each destination, kept by its sender task and written to `destinations`
//! only when it changes: the first contact, each failed attempt (at most one per retry
//! interval: the backoff bounds them), the recovery, a room sent to for the first time; the
//! stream ordering of the last event sent moves on every transaction, so it is written at most
//! once a minute (or with one of those changes). A healthy destination costs no write per
//! transaction.

use tokio::sync::Mutex;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use crate::{
    services::federation::FederationFace, store::admin_destinations::DestinationRow, util, Result,
};

/// Longest time the last sent stream ordering (and rooms' orderings) stay unwritten.
const WRITE_EVERY: Duration = Duration::from_secs(60);

/// What a successful transaction carried: the rooms and stream orderings of its PDUs.
#[derive(Debug, Default)]
pub struct Sent {
    pub pdus: Vec<(String, i64)>,
}

#[derive(Default)]
pub struct RetryState {
    loaded: bool,
    /// The row as this process knows it (written, but for `pending`).
    row: DestinationRow,
    /// The row exists in the database.
    known: bool,
    /// Rooms recorded in `destination_rooms`.
    rooms: HashSet<String>,
    /// Rooms' latest stream orderings not written yet.
    pending: HashMap<String, i64>,
    /// `row.last_successful_stream_ordering` moved since the last write.
    dirty: bool,
    last_write: Option<Instant>,
}

impl RetryState {
    /// The persisted backoff, in ms (0 when not failing).
    pub fn interval_ms(&self) -> u64 {
        self.row.retry_interval.max(0) as u64
    }

    fn failing(&self) -> bool {
        self.row.retry_last_ts != 0 || self.row.retry_interval != 0 || self.row.failure_ts.is_some()
    }

    fn due(&self) -> bool {
        self.last_write.is_none_or(|t| t.elapsed() >= WRITE_EVERY)
    }

    /// Ends the backoff (the admin's reset: the caller resets the row in the database).
    pub fn reset(&mut self) {
        self.row.retry_last_ts = 0;
        self.row.retry_interval = 0;
        self.row.failure_ts = None;
    }
}

impl FederationFace<'_> {
    /// Reads a destination's persisted state the first time its task runs.
    pub(super) async fn load_retry_state(self, dest: &str, retry: &Mutex<RetryState>) -> u64 {
        let mut st = retry.lock().await;
        if !st.loaded {
            let row = self.db.destination(dest).await.ok().flatten();
            let rooms = self.db.destination_room_ids(dest).await.unwrap_or_default();
            st.known = row.is_some();
            st.row = row.unwrap_or_else(|| DestinationRow {
                destination: dest.to_owned(),
                ..Default::default()
            });
            st.rooms = rooms.into_iter().collect();
            st.loaded = true;
        }
        st.interval_ms()
    }

    /// After a transaction the destination accepted.
    pub(super) async fn record_success(self, retry: &Mutex<RetryState>, sent: Sent) {
        let mut st = retry.lock().await;
        let mut now = !st.known || st.failing();
        st.reset();
        for (room, so) in sent.pdus {
            if !st.rooms.contains(&room) {
                now = true;
            }
            let e = st.pending.entry(room).or_insert(so);
            *e = (*e).max(so);
            if st
                .row
                .last_successful_stream_ordering
                .is_none_or(|l| l < so)
            {
                st.row.last_successful_stream_ordering = Some(so);
                st.dirty = true;
            }
        }
        if now || ((st.dirty || !st.pending.is_empty()) && st.due()) {
            self.write_retry_state(&mut st).await;
        }
    }

    /// When the destination has nothing to send: writes what waited for too long.
    pub(super) async fn record_idle(self, retry: &Mutex<RetryState>) {
        let mut st = retry.lock().await;
        if (st.dirty || !st.pending.is_empty()) && st.due() {
            self.write_retry_state(&mut st).await;
        }
    }

    /// After a failed attempt, retried in `delay`.
    pub(super) async fn record_failure(self, retry: &Mutex<RetryState>, delay: Duration) {
        let mut st = retry.lock().await;
        let now = util::now_ms();
        st.row.failure_ts.get_or_insert(now);
        st.row.retry_last_ts = now;
        st.row.retry_interval = delay.as_millis() as i64;
        self.write_retry_state(&mut st).await;
    }

    async fn write_retry_state(self, st: &mut RetryState) {
        let rooms: Vec<(String, i64)> = st.pending.iter().map(|(r, s)| (r.clone(), *s)).collect();
        match self.db.put_destination(&st.row, &rooms).await {
            Ok(()) => {
                st.known = true;
                st.dirty = false;
                st.rooms.extend(st.pending.drain().map(|(r, _)| r));
                st.last_write = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(destination = %st.row.destination, error = %e, "could not record the destination's retry state");
            }
        }
    }

    /// Ends a destination's backoff and retries it at once (the admin's `reset_connection`).
    pub async fn reset_destination(self, dest: &str) -> Result<()> {
        let q = self
            .federation_state
            .queues
            .running
            .lock()
            .get(dest)
            .cloned();
        match q {
            Some(q) => {
                let mut st = q.retry.lock().await;
                st.reset();
                self.db.reset_destination(dest).await?;
                drop(st);
                q.reset.notify_one();
            }
            None => {
                self.db.reset_destination(dest).await?;
                // Whatever waits in the outbox goes now.
                self.wake_destination(dest, false);
            }
        }
        Ok(())
    }
}
