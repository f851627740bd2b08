//! Events (the DAG): PDUs, edges, auth edges, forward extremities, transaction ids, and the
//! timeline reads behind /messages, /context and /sync.

use sqlx::Row;

use super::{placeholders, Db, Tx};

/// A stored event as the services read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub state_key: Option<String>,
    pub state_group: Option<i64>,
    pub redacted_by: Option<String>,
    pub sender_device: Option<String>,
    pub txn_id: Option<String>,
    pub json: String,
    /// Known without its place in the timeline (auth chains, state from other servers).
    pub outlier: i64,
    /// Failed the checks on receipt: never in the state nor served, and any event citing it
    /// among its auth events is rejected too.
    pub rejected: i64,
    /// Passed its own checks but not the current state's: kept, never served.
    pub soft_failed: i64,
}

impl EventRow {
    pub fn is_outlier(&self) -> bool {
        self.outlier != 0
    }
    pub fn is_rejected(&self) -> bool {
        self.rejected != 0
    }
    pub fn is_soft_failed(&self) -> bool {
        self.soft_failed != 0
    }
}

pub const EVENT_COLS: &str =
    "e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, e.state_key, \
     e.state_group, e.redacted_by, e.sender_device, e.txn_id, e.json, e.outlier, e.rejected, \
     e.soft_failed";

/// What persisting one event writes.
pub struct NewEvent<'a> {
    pub stream_ordering: i64,
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub state_group: i64,
    pub json: &'a str,
    pub prev_events: Vec<&'a str>,
    pub auth_events: Vec<&'a str>,
    pub sender_device: Option<&'a str>,
    pub txn_id: Option<&'a str>,
    /// The transaction's scope key (endpoint, room, txn id) for idempotent retries.
    pub txn_key: Option<&'a str>,
    /// Known but not part of the timeline (auth chains and state from other servers).
    pub outlier: bool,
    /// Passed its own auth checks but not the current state's: kept, not shown.
    pub soft_failed: bool,
    /// Failed the checks on receipt (its auth events refuse it): kept known, never used.
    pub rejected: bool,
}

/// Timeline direction for pagination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Backward,
    Forward,
}

/// A timeline condition: events are visible in timelines when neither rejected, outliers nor
/// soft-failed.
const LIVE: &str = "e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0";

impl Db {
    /// Inserts a batch of events of one room with their edges, auth edges and transaction ids,
    /// a few multi-row statements whatever the batch size, and moves the room's forward
    /// extremities: `removed` are no longer extremities, `added` are.
    pub async fn insert_events(
        tx: &mut Tx,
        room_id: &str,
        events: &[NewEvent<'_>],
        removed: &[&str],
        added: &[&str],
    ) -> sqlx::Result<()> {
        for chunk in events.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, state_key, depth, \
                 origin_server_ts, state_group, sender_device, txn_id, json, outlier, soft_failed, rejected) VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 15);
            // A batch may hold events already known (a retried join): keep the first copy.
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for ev in chunk {
                q = q
                    .bind(ev.stream_ordering)
                    .bind(ev.event_id)
                    .bind(ev.room_id)
                    .bind(ev.sender)
                    .bind(ev.kind)
                    .bind(ev.state_key)
                    .bind(ev.depth)
                    .bind(ev.origin_server_ts)
                    .bind(ev.state_group)
                    .bind(ev.sender_device)
                    .bind(ev.txn_id)
                    .bind(ev.json)
                    .bind(i64::from(ev.outlier))
                    .bind(i64::from(ev.soft_failed))
                    .bind(i64::from(ev.rejected));
            }
            q.execute(&mut **tx).await?;
        }
        let edges: Vec<(&str, &str)> = events
            .iter()
            .flat_map(|e| e.prev_events.iter().map(move |p| (e.event_id, *p)))
            .collect();
        insert_pairs(
            tx,
            "INSERT INTO event_edges (event_id, prev_event_id) VALUES ",
            &edges,
        )
        .await?;
        let auth: Vec<(&str, &str)> = events
            .iter()
            .flat_map(|e| e.auth_events.iter().map(move |a| (e.event_id, *a)))
            .collect();
        insert_pairs(
            tx,
            "INSERT INTO event_auth (event_id, auth_id) VALUES ",
            &auth,
        )
        .await?;
        let txns: Vec<&NewEvent> = events
            .iter()
            .filter(|e| e.sender_device.is_some() && e.txn_key.is_some())
            .collect();
        for chunk in txns.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 5);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for ev in chunk {
                q = q
                    .bind(ev.sender)
                    .bind(ev.sender_device)
                    .bind(ev.txn_key)
                    .bind(ev.event_id)
                    .bind(ev.origin_server_ts);
            }
            q.execute(&mut **tx).await?;
        }
        if !removed.is_empty() {
            let sql = format!(
                "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id IN ({})",
                placeholders(2, removed.len())
            );
            let mut q = sqlx::query(&sql).bind(room_id);
            for r in removed {
                q = q.bind(*r);
            }
            q.execute(&mut **tx).await?;
        }
        for a in added {
            sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(room_id)
                .bind(*a)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Marks `target` redacted by `redaction_id`, only within the redaction's room, and takes it
    /// out of the search index.
    pub async fn mark_redacted(
        tx: &mut Tx,
        room_id: &str,
        target: &str,
        redaction_id: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE events SET redacted_by = $1 WHERE event_id = $2 AND room_id = $3 AND redacted_by IS NULL",
        )
        .bind(redaction_id)
        .bind(target)
        .bind(room_id)
        .execute(&mut **tx)
        .await?;
        Self::unindex_for_search(tx, room_id, target).await
    }

    pub async fn txn_event(
        &self,
        user: &str,
        device: &str,
        txn: &str,
    ) -> sqlx::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
        )
        .bind(user)
        .bind(device)
        .bind(txn)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Records a transaction id; false when it was already used (the request is a retry).
    pub async fn claim_txn(
        tx: &mut Tx,
        user: &str,
        device: &str,
        txn: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ($1, $2, $3, '', $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user)
        .bind(device)
        .bind(txn)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn max_stream_ordering(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(stream_ordering), 0) FROM events")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        row.try_get(0)
    }

    /// Flags stored outliers of a room as rejected (events a policy refuses, kept known so
    /// they are not fetched again, never served nor used).
    pub async fn mark_rejected(&self, room_id: &str, ids: &[String]) -> sqlx::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE events SET rejected = 1 WHERE room_id = $1 AND outlier = 1 AND event_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(room_id);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    pub async fn get_event(&self, event_id: &str) -> sqlx::Result<Option<EventRow>> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.event_id = $1 AND e.rejected = 0"
        ))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// Events by id, rejected ones left out (like [`Self::get_event`]): what is read to serve
    /// clients and other servers.
    pub async fn get_events(&self, ids: &[String]) -> sqlx::Result<Vec<EventRow>> {
        self.events_by_id(ids, false).await
    }

    /// Events by id, rejected ones included with their flag: what the auth rules and state
    /// resolution read, which must know that an auth event was rejected.
    pub async fn get_events_with_rejected(&self, ids: &[String]) -> sqlx::Result<Vec<EventRow>> {
        self.events_by_id(ids, true).await
    }

    async fn events_by_id(
        &self,
        ids: &[String],
        with_rejected: bool,
    ) -> sqlx::Result<Vec<EventRow>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let cond = if with_rejected {
            ""
        } else {
            " AND e.rejected = 0"
        };
        let mut rows: Vec<EventRow> = self
            .select_in(
                &format!("SELECT {EVENT_COLS} FROM events e WHERE e.event_id IN ({{in}}){cond}"),
                &[],
                ids,
            )
            .await?;
        rows.sort_by_key(|r| r.stream_ordering);
        Ok(rows)
    }

    /// The room of each of these events that is stored here: (event id, room id).
    pub async fn event_rooms(&self, ids: &[&str]) -> sqlx::Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        self.select_in(
            "SELECT event_id, room_id FROM events WHERE event_id IN ({in})",
            &[],
            ids,
        )
        .await
    }

    /// Events by stream position (the primary key).
    pub async fn events_at_streams(&self, streams: &[i64]) -> sqlx::Result<Vec<EventRow>> {
        if streams.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.stream_ordering IN ({}) ORDER BY e.stream_ordering",
            placeholders(1, streams.len())
        );
        let mut q = sqlx::query_as(&sql);
        for s in streams {
            q = q.bind(*s);
        }
        q.fetch_all(&self.pool).await
    }

    /// Up to `limit` live events of a room strictly before (backward) or after (forward) `from`,
    /// stopping at `to` (exclusive bound on the far side), in the direction's order.
    pub async fn room_events(
        &self,
        room_id: &str,
        from: i64,
        to: Option<i64>,
        dir: Dir,
        limit: i64,
    ) -> sqlx::Result<Vec<EventRow>> {
        let sql = match dir {
            Dir::Backward => format!(
                "SELECT {EVENT_COLS} FROM events e WHERE e.room_id = $1 AND e.stream_ordering < $2 \
                 AND e.stream_ordering > $3 AND {LIVE} ORDER BY e.stream_ordering DESC LIMIT $4"
            ),
            Dir::Forward => format!(
                "SELECT {EVENT_COLS} FROM events e WHERE e.room_id = $1 AND e.stream_ordering > $2 \
                 AND e.stream_ordering < $3 AND {LIVE} ORDER BY e.stream_ordering ASC LIMIT $4"
            ),
        };
        // Backfilled events have negative positions.
        let to = to.unwrap_or(match dir {
            Dir::Backward => i64::MIN,
            Dir::Forward => i64::MAX,
        });
        sqlx::query_as(&sql)
            .bind(room_id)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    /// For each room, the last `limit` live events with `lower < stream_ordering <= upper`, in
    /// stream order, plus for each room whether older events in range were left out. One query
    /// for every room: the bound per room comes from an indexed correlated sub-query.
    pub async fn recent_events_per_room(
        &self,
        room_ids: &[String],
        lower: i64,
        upper: i64,
        limit: i64,
    ) -> sqlx::Result<(Vec<EventRow>, Vec<(String, i64)>)> {
        if room_ids.is_empty() {
            return Ok((vec![], vec![]));
        }
        let n = room_ids.len();
        let rooms = placeholders(4, n);
        // The stream ordering of the (limit+1)-th newest event per room, if any: the timeline is
        // what is strictly after it (and after `lower`).
        let bounds_sql = format!(
            "SELECT r.room_id, (SELECT e.stream_ordering FROM events e WHERE e.room_id = r.room_id \
               AND e.stream_ordering > $1 AND e.stream_ordering <= $2 AND {LIVE} \
               ORDER BY e.stream_ordering DESC LIMIT 1 OFFSET $3) AS bound \
             FROM rooms r WHERE r.room_id IN ({rooms})"
        );
        let mut q = sqlx::query(&bounds_sql).bind(lower).bind(upper).bind(limit);
        for r in room_ids {
            q = q.bind(r);
        }
        let mut limited = vec![];
        for row in q.fetch_all(&self.pool).await? {
            let bound: Option<i64> = row.try_get(1)?;
            if let Some(b) = bound {
                limited.push((row.try_get(0)?, b));
            }
        }
        // Fetch events after each room's bound.
        let mut cond = String::new();
        let mut binds: Vec<(String, i64)> = vec![];
        for r in room_ids {
            let lo = limited
                .iter()
                .find(|(id, _)| id == r)
                .map(|(_, b)| *b)
                .unwrap_or(lower);
            binds.push((r.clone(), lo));
        }
        for (i, _) in binds.iter().enumerate() {
            if i > 0 {
                cond.push_str(" OR ");
            }
            cond.push_str(&format!(
                "(e.room_id = ${} AND e.stream_ordering > ${})",
                2 + 2 * i,
                3 + 2 * i
            ));
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.stream_ordering <= $1 AND ({cond}) AND {LIVE} \
             ORDER BY e.stream_ordering"
        );
        let mut q = sqlx::query_as(&sql).bind(upper);
        for (r, lo) in &binds {
            q = q.bind(r).bind(*lo);
        }
        Ok((q.fetch_all(&self.pool).await?, limited))
    }

    /// Extremities and the greatest depth of a room.
    pub async fn room_extremities(&self, room_id: &str) -> sqlx::Result<(Vec<String>, i64)> {
        let rows = sqlx::query("SELECT event_id FROM forward_extremities WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await?;
        let ids = rows
            .into_iter()
            .map(|r| r.try_get(0))
            .collect::<sqlx::Result<Vec<String>>>()?;
        let row = sqlx::query("SELECT COALESCE(MAX(depth), 0) FROM events WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        Ok((ids, row.try_get(0)?))
    }

    /// The latest live event of a room at or before `at` (for the state at a stream position).
    pub async fn latest_event_before(
        &self,
        room_id: &str,
        at: i64,
    ) -> sqlx::Result<Option<EventRow>> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.room_id = $1 AND e.stream_ordering <= $2 AND {LIVE} \
             ORDER BY e.stream_ordering DESC LIMIT 1"
        ))
        .bind(room_id)
        .bind(at)
        .fetch_all(&self.pool)
        .await.map(super::first)
    }
}

/// Appends `n` rows of `width` placeholders: `($1, $2), ($3, $4)`.
pub fn push_rows(sql: &mut String, n: usize, width: usize) {
    super::push_rows_from(sql, 1, n, width)
}

async fn insert_pairs(tx: &mut Tx, head: &str, pairs: &[(&str, &str)]) -> sqlx::Result<()> {
    for chunk in pairs.chunks(500) {
        let mut sql = String::from(head);
        push_rows(&mut sql, chunk.len(), 2);
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(&sql);
        for (a, b) in chunk {
            q = q.bind(*a).bind(*b);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
