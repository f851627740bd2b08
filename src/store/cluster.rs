//! Several nodes on one PostgreSQL: the shared stream counters, the positions in flight, the
//! notification channel and the advisory locks (docs/high-availability.md). SQLite serves one
//! process and uses none of this.
//!
//! Stream positions: a node takes positions by raising the stream's counter and recording them
//! as in flight in the same statement (one snapshot shows both or neither); its write deletes
//! its rows in its own transaction, which fails if they are gone (a node declared dead must not
//! commit behind the others' backs). Every node reads "persisted up to" as
//! min(counter, lowest in flight - 1): a reader never passes a position another node may still
//! commit.

use sqlx::{postgres::PgListener, Connection, PgConnection, Row};

use super::{Db, Dialect, Tx};

/// The channel every node listens on.
pub const CHANNEL: &str = "palabre";
/// Advisory-lock namespace (first key of the two-key form) of node slots (its decimal form is
/// in [`LIVE_SLOTS`]).
const NODE_LOCKS: i32 = 0x5061_6c01;
/// The slots of the live nodes (their lock is held), as a subquery.
pub const LIVE_SLOTS: &str = "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' \
     AND granted AND classid::bigint = 1348561921 AND objsubid = 2 \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
/// Advisory-lock namespace of rooms (second key: `hashtext(room_id)`).
const ROOM_LOCKS: i32 = 0x5061_6c02;
/// Advisory-lock namespace of singletons (second key: the singleton's number).
const SINGLETON_LOCKS: i32 = 0x5061_6c03;
/// Node slots: a node's number in the cluster (1 to 1023), part of the ids it makes (see
/// `IdGen`).
pub const SLOTS: i64 = 1024;

/// Raises a stream's counter by `$2` (`$1` the stream).
const BUMP: &str = "UPDATE stream_counters SET last = last + $2 WHERE stream = $1 RETURNING last";
/// Records the positions `g` as in flight for the slot `$3`.
const RECORD: &str =
    "INSERT INTO stream_inflight (stream, pos, slot, taken_ts) SELECT $1, g, $3, $4";
/// A position in flight longer than this was left by a write that will never finish it (a
/// request cancelled between taking and writing): it is taken back. Far longer than any write;
/// a write that still runs then fails its finish and is retried.
pub const MAX_IN_FLIGHT_MS: i64 = 60_000;

/// The positions a take returned, in order (all `n` of them, or an error).
fn taken(stream: &str, n: usize, rows: Vec<sqlx::any::AnyRow>) -> sqlx::Result<Vec<i64>> {
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<sqlx::Result<_>>()?;
    ids.sort_unstable();
    if ids.len() != n {
        return Err(sqlx::Error::Protocol(format!(
            "stream {stream}: {n} positions asked, {} taken",
            ids.len()
        )));
    }
    Ok(ids)
}

/// A write's stream positions, finished in its transaction: the rows in flight deleted (all of
/// them, or the write fails) and the notice sent to every node at commit.
pub struct Finish<'a> {
    pub stream: &'a str,
    pub ids: &'a [i64],
    pub notice: String,
}

impl Db {
    /// Positions come from the database (PostgreSQL: any number of nodes may share it).
    pub fn shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Makes sure the stream's counter is at least `at_least` (what the tables already hold);
    /// returns the counter. Safe with other nodes taking positions at the same time.
    pub async fn init_stream_counter(&self, stream: &str, at_least: i64) -> sqlx::Result<i64> {
        sqlx::query(
            "INSERT INTO stream_counters (stream, last) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET last = GREATEST(stream_counters.last, EXCLUDED.last) \
             RETURNING last",
        )
        .bind(stream)
        .bind(at_least)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?
        .try_get(0)
    }

    /// Takes `n` positions of a stream for the node in `slot`, recorded as in flight.
    pub async fn take_positions(
        &self,
        stream: &str,
        n: usize,
        slot: i64,
    ) -> sqlx::Result<Vec<i64>> {
        // The counter's row lock orders the takers; the commit needs no flush of its own (a
        // crash loses the positions with every write that would have used them).
        let rows = sqlx::query(&format!(
            "WITH c AS ({BUMP}), s AS (SELECT set_config('synchronous_commit', 'off', true) AS v) \
             {RECORD} FROM c, s, generate_series(c.last - $2 + 1, c.last) AS g RETURNING pos"
        ))
        .bind(stream)
        .bind(n as i64)
        .bind(slot)
        .bind(crate::util::now_ms())
        .fetch_all(&self.pool)
        .await?;
        taken(stream, n, rows)
    }

    /// [`Db::take_positions`] inside the write's own transaction (for a write that learns
    /// only there how many it needs, and must not wait for a second connection while it holds
    /// one): the counter's row stays locked until the write commits, and its positions become
    /// readable exactly then (its in-flight rows are finished in it).
    pub async fn take_positions_tx(
        tx: &mut Tx,
        stream: &str,
        n: usize,
        slot: i64,
    ) -> sqlx::Result<Vec<i64>> {
        let rows = sqlx::query(&format!(
            "WITH c AS ({BUMP}) {RECORD} FROM c, generate_series(c.last - $2 + 1, c.last) AS g \
             RETURNING pos"
        ))
        .bind(stream)
        .bind(n as i64)
        .bind(slot)
        .bind(crate::util::now_ms())
        .fetch_all(&mut **tx)
        .await?;
        taken(stream, n, rows)
    }

    /// In the write's transaction: deletes its positions in flight (failing if another node
    /// declared this one dead and deleted them) and sends its notice at commit. Nothing on
    /// SQLite.
    pub async fn finish_positions(&self, tx: &mut Tx, f: Option<&Finish<'_>>) -> sqlx::Result<()> {
        let Some(f) = f.filter(|_| self.shared()) else {
            return Ok(());
        };
        if f.ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "WITH d AS (DELETE FROM stream_inflight WHERE stream = $1 AND pos IN ({}) RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM d), pg_notify('{CHANNEL}', $2)",
            super::placeholders(3, f.ids.len())
        );
        let mut q = sqlx::query(&sql).bind(f.stream).bind(&f.notice);
        for id in f.ids {
            q = q.bind(*id);
        }
        let done: i64 = q
            .fetch_all(&mut **tx)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        if done != f.ids.len() as i64 {
            return Err(sqlx::Error::Protocol(format!(
                "stream {}: positions taken back by the cluster (this node was declared dead)",
                f.stream
            )));
        }
        Ok(())
    }

    /// Positions whose write failed: no longer in flight (the notice wakes the readers).
    pub async fn drop_positions(
        &self,
        stream: &str,
        ids: &[i64],
        notice: &str,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "DELETE FROM stream_inflight WHERE stream = $1 AND pos IN ({})",
            super::placeholders(2, ids.len())
        );
        let mut q = sqlx::query(&sql).bind(stream);
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
        self.notify_in(&mut tx, notice).await?;
        tx.commit().await
    }

    /// The position below which every position of the stream is committed or dropped.
    pub async fn stream_upto(&self, stream: &str) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "SELECT c.last, (SELECT MIN(pos) FROM stream_inflight WHERE stream = $1) \
             FROM stream_counters c WHERE c.stream = $1",
        )
        .bind(stream)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        let last: i64 = row.try_get(0)?;
        let low: Option<i64> = row.try_get(1)?;
        Ok(low.map_or(last, |l| last.min(l - 1)))
    }

    /// Deletes the positions in flight of nodes that are gone (their slot's lock is free: their
    /// session ended), and those in flight for longer than [`MAX_IN_FLIGHT_MS`]. Returns how
    /// many.
    pub async fn reap_dead_positions(&self) -> sqlx::Result<u64> {
        let r = sqlx::query(&format!(
            "DELETE FROM stream_inflight WHERE slot NOT IN ({LIVE_SLOTS}) OR taken_ts < $1"
        ))
        .bind(crate::util::now_ms() - MAX_IN_FLIGHT_MS)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Sends a notice to every node (at once, outside any write).
    pub async fn notify(&self, notice: &str) -> sqlx::Result<()> {
        if !self.shared() {
            return Ok(());
        }
        sqlx::query(&format!("SELECT pg_notify('{CHANNEL}', $1)"))
            .bind(notice)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sends a notice to every node when the transaction commits.
    pub async fn notify_in(&self, tx: &mut Tx, notice: &str) -> sqlx::Result<()> {
        if !self.shared() {
            return Ok(());
        }
        sqlx::query(&format!("SELECT pg_notify('{CHANNEL}', $1)"))
            .bind(notice)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// This node's own connection: it holds the node's slot lock for as long as the node lives
/// (PostgreSQL frees it when the session ends, however the node ends).
pub struct NodeLink {
    conn: PgConnection,
    pub slot: i64,
}

impl NodeLink {
    /// Connects and claims a free slot, starting the search at `hint`.
    pub async fn claim(url: &str, hint: i64) -> sqlx::Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        // Slot 0 is no node's (SQLite, rows from before the cluster): always an orphan.
        for i in 0..SLOTS - 1 {
            let slot = 1 + (hint + i).rem_euclid(SLOTS - 1);
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(NODE_LOCKS)
                .bind(slot as i32)
                .fetch_one(&mut conn)
                .await?;
            if got {
                // Rows a previous holder of the slot left (its session is gone) are not ours.
                sqlx::query("DELETE FROM stream_inflight WHERE slot = $1")
                    .bind(slot)
                    .execute(&mut conn)
                    .await?;
                return Ok(Self { conn, slot });
            }
        }
        Err(sqlx::Error::Protocol(format!(
            "all {SLOTS} node slots of the cluster are taken"
        )))
    }

    /// Still connected (the slot is still ours)?
    pub async fn ping(&mut self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }

    /// Tries to become the holder of a singleton (kept until this link closes or
    /// [`NodeLink::release`]).
    pub async fn try_hold(&mut self, singleton: i32) -> sqlx::Result<bool> {
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(SINGLETON_LOCKS)
            .bind(singleton)
            .fetch_one(&mut self.conn)
            .await
    }

    /// Gives up a singleton held by this link.
    pub async fn release(&mut self, singleton: i32) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(SINGLETON_LOCKS)
            .bind(singleton)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Ends the session: the slot and every singleton are free for the others at once.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// The notices of every node, as they come.
pub struct Notices(PgListener);

impl Notices {
    pub async fn listen(url: &str) -> sqlx::Result<Self> {
        let mut l = PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok(Self(l))
    }

    /// The next notice; `None` when the connection was lost (it reconnects on the next call:
    /// notices sent meanwhile are lost, the caller catches up from the tables).
    pub async fn next(&mut self) -> sqlx::Result<Option<String>> {
        Ok(self.0.try_recv().await?.map(|n| n.payload().to_owned()))
    }
}

/// A pool of connections that hold room locks (apart from the main pool, so that a write under
/// a room lock never waits for a connection held by another room's lock).
pub struct RoomLocks(sqlx::PgPool);

/// One room locked across the cluster; unlocked with [`RoomLocks::unlock`] (or by closing the
/// connection if that fails).
pub struct RoomLock(sqlx::pool::PoolConnection<sqlx::Postgres>);

impl RoomLocks {
    pub fn new(url: &str, size: u32) -> sqlx::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(size.max(1))
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_lazy(url)?;
        Ok(Self(pool))
    }

    /// Waits for the room's lock (held by whichever node writes the room now).
    pub async fn lock(&self, room_id: &str) -> sqlx::Result<RoomLock> {
        let mut conn = self.0.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
            .bind(ROOM_LOCKS)
            .bind(room_id)
            .execute(&mut *conn)
            .await?;
        Ok(RoomLock(conn))
    }

    pub async fn unlock(room_id: &str, mut lock: RoomLock) {
        let res = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(ROOM_LOCKS)
            .bind(room_id)
            .execute(&mut *lock.0)
            .await;
        if res.is_err() {
            // A connection that may still hold the lock never goes back to the pool.
            let _ = lock.0.detach().close().await;
        }
    }

    pub async fn close(&self) {
        self.0.close().await;
    }
}
