//! Reads and writes over the event DAG for state resolution, serving other servers and
//! backfill: auth-chain edges, events' state groups, the walk back for `/backfill`, the event
//! closest to a time, which servers are in a room, and backfilled (old) events.

use std::collections::HashMap;

use sqlx::Row;

use super::{
    events::{EventRow, NewEvent, EVENT_COLS},
    placeholders, Db, Tx,
};

/// Largest `IN (…)` list sent in one statement (both dialects take far more parameters).
const IN_CHUNK: usize = 5_000;

/// Where a known event stands: its state group (the state after it) and whether it is an
/// outlier (known without its place in the DAG: no usable state).
#[derive(Debug, Clone)]
pub struct EventPlace {
    pub event_id: String,
    pub room_id: String,
    pub state_group: Option<i64>,
    pub outlier: bool,
    pub soft_failed: bool,
}

impl Db {
    /// The auth edges (event, auth event) of the whole auth chains of `ids`, `ids` included as
    /// starting points: one recursive query per chunk of seeds, whatever the chain length.
    pub async fn auth_chain_edges(&self, ids: &[String]) -> sqlx::Result<Vec<(String, String)>> {
        self.select_in(
            "WITH RECURSIVE chain(id) AS ( \
               SELECT e.event_id FROM events e WHERE e.event_id IN ({in}) \
               UNION SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id ) \
             SELECT a.event_id, a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id",
            &[],
            ids,
        )
        .await
    }

    /// Events by id, any number of ids (chunked `IN` lists), rejected ones left out.
    pub async fn get_events_chunked(&self, ids: &[String]) -> sqlx::Result<Vec<EventRow>> {
        let mut out = vec![];
        for chunk in ids.chunks(IN_CHUNK) {
            out.extend(self.get_events(chunk).await?);
        }
        Ok(out)
    }

    /// [`Self::get_events_chunked`] with the rejected events, flagged (for the auth rules).
    pub async fn get_events_chunked_with_rejected(
        &self,
        ids: &[String],
    ) -> sqlx::Result<Vec<EventRow>> {
        let mut out = vec![];
        for chunk in ids.chunks(IN_CHUNK) {
            out.extend(self.get_events_with_rejected(chunk).await?);
        }
        Ok(out)
    }

    /// The place of the known, not rejected, events among `ids`.
    pub async fn event_places(&self, ids: &[String]) -> sqlx::Result<Vec<EventPlace>> {
        let mut out = vec![];
        for chunk in ids.chunks(IN_CHUNK) {
            out.extend(self.event_places_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn event_places_chunk(&self, ids: &[String]) -> sqlx::Result<Vec<EventPlace>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT event_id, state_group, outlier, soft_failed, room_id FROM events \
             WHERE event_id IN ({}) AND rejected = 0",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok(EventPlace {
                    event_id: r.try_get(0)?,
                    state_group: r.try_get(1)?,
                    outlier: r.try_get::<i64, _>(2)? != 0,
                    soft_failed: r.try_get::<i64, _>(3)? != 0,
                    room_id: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Whether a user of `server` is joined to the room now.
    pub async fn server_joined(&self, room_id: &str, server: &str) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM memberships WHERE room_id = $1 AND membership = 'join' \
             AND user_id LIKE $2 ESCAPE '\\' LIMIT 1",
        )
        .bind(room_id)
        .bind(super::rooms::users_of(server))
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    /// The users of `server` that have (or had) a membership in each of these rooms:
    /// (room, user, membership).
    pub async fn server_members(
        &self,
        rooms: &[String],
        server: &str,
    ) -> sqlx::Result<Vec<(String, String, String)>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT room_id, user_id, membership FROM memberships WHERE room_id IN ({}) \
             AND user_id LIKE $1 ESCAPE '\\'",
            placeholders(2, rooms.len())
        );
        let mut q = sqlx::query(&sql).bind(super::rooms::users_of(server));
        for r in rooms {
            q = q.bind(r);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// `/backfill`: the events of a room reached walking prev edges back from `from` (included),
    /// deepest first, at most `limit`. One recursive query: the walk goes at most `limit` steps
    /// back, beyond which no event can be among the `limit` deepest.
    pub async fn backfill_walk(
        &self,
        room_id: &str,
        from: &[String],
        limit: i64,
    ) -> sqlx::Result<Vec<EventRow>> {
        if from.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "WITH RECURSIVE walk(id, n) AS ( \
               SELECT e.event_id, CAST(0 AS BIGINT) FROM events e WHERE e.event_id IN ({}) AND e.room_id = $1 \
               UNION SELECT ed.prev_event_id, w.n + 1 FROM walk w JOIN event_edges ed ON ed.event_id = w.id \
               WHERE w.n < $2 ) \
             SELECT {EVENT_COLS} FROM events e WHERE e.event_id IN (SELECT id FROM walk) \
               AND e.room_id = $1 AND e.rejected = 0 AND e.outlier = 0 \
             ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT $2",
            placeholders(3, from.len())
        );
        let mut q = sqlx::query_as(&sql).bind(room_id).bind(limit);
        for id in from {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await
    }

    /// The live event of a room closest to `ts`: the first at or after it (`forward`), or the
    /// last at or before it.
    pub async fn event_near_ts(
        &self,
        room_id: &str,
        ts: i64,
        forward: bool,
    ) -> sqlx::Result<Option<(String, i64)>> {
        let sql = if forward {
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts >= $2 \
             AND rejected = 0 AND outlier = 0 AND soft_failed = 0 \
             ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1"
        } else {
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND origin_server_ts <= $2 \
             AND rejected = 0 AND outlier = 0 AND soft_failed = 0 \
             ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1"
        };
        let row = sqlx::query(sql)
            .bind(room_id)
            .bind(ts)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The earliest live event of a room (by stream order), if any.
    pub async fn earliest_event(&self, room_id: &str) -> sqlx::Result<Option<EventRow>> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.room_id = $1 AND e.rejected = 0 \
             AND e.outlier = 0 ORDER BY e.stream_ordering ASC LIMIT 1"
        ))
        .bind(room_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// The lowest stream position used (backfilled events go below it).
    pub async fn min_stream_ordering(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MIN(stream_ordering), 0) FROM events")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        row.try_get(0)
    }

    /// The backfill record of a room: (event last asked about, room start reached).
    pub async fn room_backfill(&self, room_id: &str) -> sqlx::Result<(Option<String>, bool)> {
        let row = sqlx::query(
            "SELECT asked_event_id, reached_start FROM room_backfill WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        Ok(match row {
            Some(r) => (r.try_get(0)?, r.try_get::<i64, _>(1)? != 0),
            None => (None, false),
        })
    }

    pub async fn set_room_backfill(
        &self,
        room_id: &str,
        asked: Option<&str>,
        reached_start: bool,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO room_backfill (room_id, asked_event_id, reached_start) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id) DO UPDATE SET asked_event_id = excluded.asked_event_id, \
             reached_start = excluded.reached_start",
        )
        .bind(room_id)
        .bind(asked)
        .bind(i64::from(reached_start))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Removes current state entries (state resolution dropped them) and the memberships they
    /// carried.
    pub async fn delete_current_state(
        tx: &mut Tx,
        room_id: &str,
        keys: &[(&str, &str)],
    ) -> sqlx::Result<()> {
        for (kind, key) in keys {
            sqlx::query(
                "DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3",
            )
            .bind(room_id)
            .bind(*kind)
            .bind(*key)
            .execute(&mut **tx)
            .await?;
            if *kind == "m.room.member" {
                sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(*key)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores old events fetched by backfill: new ones are inserted, those known as outliers
    /// take their place in the timeline (their stream position, state group and prev edges).
    /// Never touches the current state nor the forward extremities.
    pub async fn insert_backfilled(
        tx: &mut Tx,
        room_id: &str,
        events: &[NewEvent<'_>],
    ) -> sqlx::Result<()> {
        for ev in events {
            sqlx::query(
                "UPDATE events SET stream_ordering = $1, state_group = $2, outlier = 0 \
                 WHERE event_id = $3 AND room_id = $4 AND outlier = 1 AND rejected = 0",
            )
            .bind(ev.stream_ordering)
            .bind(ev.state_group)
            .bind(ev.event_id)
            .bind(room_id)
            .execute(&mut **tx)
            .await?;
        }
        // New rows (an outlier updated above conflicts on event_id and is skipped).
        Db::insert_events(tx, room_id, events, &[], &[]).await
    }
}

/// Groups pairs by their first element.
pub fn adjacency(edges: Vec<(String, String)>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (a, b) in edges {
        out.entry(a).or_default().push(b);
    }
    out
}
