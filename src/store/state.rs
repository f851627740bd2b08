//! Room state: state groups (snapshots shared by structure: each group is a delta on its
//! predecessor, with a full snapshot every so often) and the materialised current state.

use std::collections::HashMap;

use sqlx::Row;

use super::{events::EventRow, events::EVENT_COLS, placeholders, Db, Tx};

/// (type, state_key) -> event id
pub type StateIds = HashMap<(String, String), String>;

impl Db {
    pub async fn insert_state_group(
        tx: &mut Tx,
        id: i64,
        room_id: &str,
        prev_group: Option<i64>,
        chain_len: i64,
        entries: &[(&str, &str, &str)],
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(room_id)
        .bind(prev_group)
        .bind(chain_len)
        .execute(&mut **tx)
        .await?;
        // Batched multi-row inserts (up to 200 rows per statement).
        for chunk in entries.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "($1, ${}, ${}, ${})",
                    2 + 3 * i,
                    3 + 3 * i,
                    4 + 3 * i
                ));
            }
            let mut q = sqlx::query(&sql).bind(id);
            for (t, k, e) in chunk {
                q = q.bind(*t).bind(*k).bind(*e);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn max_state_group(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM state_groups")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        row.try_get(0)
    }

    pub async fn state_group_chain_len(&self, group: i64) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT chain_len FROM state_groups WHERE id = $1")
            .bind(group)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// The full state of several groups, or only the given (type, state_key) pairs of it, in one
    /// query walking each delta chain.
    pub async fn state_at_groups(
        &self,
        groups: &[i64],
        only: Option<&[(&str, &str)]>,
    ) -> sqlx::Result<HashMap<i64, StateIds>> {
        let mut out: HashMap<i64, StateIds> = HashMap::new();
        if groups.is_empty() {
            return Ok(out);
        }
        let n = groups.len();
        let mut filter = String::new();
        if let Some(keys) = only {
            if keys.is_empty() {
                return Ok(groups.iter().map(|g| (*g, StateIds::new())).collect());
            }
            filter.push_str(" WHERE ");
            for i in 0..keys.len() {
                if i > 0 {
                    filter.push_str(" OR ");
                }
                filter.push_str(&format!(
                    "(s.type = ${} AND s.state_key = ${})",
                    n + 1 + 2 * i,
                    n + 2 + 2 * i
                ));
            }
        }
        let sql = format!(
            "WITH RECURSIVE chain(root, id, lvl) AS ( \
               SELECT id, id, CAST(0 AS BIGINT) FROM state_groups WHERE id IN ({}) \
               UNION ALL \
               SELECT c.root, g.prev_group, c.lvl + 1 FROM chain c JOIN state_groups g ON g.id = c.id \
               WHERE g.prev_group IS NOT NULL) \
             SELECT c.root, c.lvl, s.type, s.state_key, s.event_id FROM chain c \
             JOIN state_group_entries s ON s.group_id = c.id{filter} ORDER BY c.root, c.lvl",
            placeholders(1, n)
        );
        let mut q = sqlx::query(&sql);
        for g in groups {
            q = q.bind(*g);
        }
        if let Some(keys) = only {
            for (t, k) in keys {
                q = q.bind(*t).bind(*k);
            }
        }
        for g in groups {
            out.entry(*g).or_default();
        }
        for row in q.fetch_all(&self.pool).await? {
            let root: i64 = row.try_get(0)?;
            let key = (row.try_get::<String, _>(2)?, row.try_get::<String, _>(3)?);
            // Rows come nearest-first: the first value seen for a key wins.
            out.entry(root)
                .or_default()
                .entry(key)
                .or_insert(row.try_get(4)?);
        }
        Ok(out)
    }

    /// Sets current state entries (at most one per key) of a room in one statement.
    pub async fn upsert_current_state(
        tx: &mut Tx,
        room_id: &str,
        rows: &[(&str, &str, &str, i64)],
    ) -> sqlx::Result<()> {
        for chunk in rows.chunks(100) {
            let mut sql = String::from("INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering) VALUES ");
            super::events::push_rows(&mut sql, chunk.len(), 5);
            sql.push_str(
                " ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, \
                 stream_ordering = excluded.stream_ordering",
            );
            let mut q = sqlx::query(&sql);
            for (kind, key, event_id, stream) in chunk {
                q = q
                    .bind(room_id)
                    .bind(*kind)
                    .bind(*key)
                    .bind(*event_id)
                    .bind(*stream);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Current state events of several rooms, optionally only some types.
    pub async fn current_state_events(
        &self,
        rooms: &[String],
        types: Option<&[&str]>,
    ) -> sqlx::Result<Vec<EventRow>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let mut sql = format!(
            "SELECT {EVENT_COLS} FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.room_id IN ({})",
            placeholders(1, rooms.len())
        );
        if let Some(t) = types {
            sql.push_str(&format!(
                " AND cs.type IN ({})",
                placeholders(rooms.len() + 1, t.len())
            ));
        }
        sql.push_str(" ORDER BY e.stream_ordering");
        let mut q = sqlx::query_as(&sql);
        for r in rooms {
            q = q.bind(r);
        }
        for t in types.unwrap_or(&[]) {
            q = q.bind(*t);
        }
        q.fetch_all(&self.pool).await
    }

    /// Current state of several rooms without member events (lazy-loading clients get the
    /// members they need from [`Db::current_members`]).
    pub async fn current_state_without_members(
        &self,
        rooms: &[String],
    ) -> sqlx::Result<Vec<EventRow>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.room_id IN ({}) AND cs.type <> 'm.room.member' ORDER BY e.stream_ordering",
            placeholders(1, rooms.len())
        );
        let mut q = sqlx::query_as(&sql);
        for r in rooms {
            q = q.bind(r);
        }
        q.fetch_all(&self.pool).await
    }

    /// Current member events of the given users in the given rooms (index lookups only).
    pub async fn current_members(
        &self,
        rooms: &[String],
        users: &[String],
    ) -> sqlx::Result<Vec<EventRow>> {
        if rooms.is_empty() || users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.room_id IN ({}) AND cs.type = 'm.room.member' AND cs.state_key IN ({}) ORDER BY e.stream_ordering",
            placeholders(1, rooms.len()),
            placeholders(1 + rooms.len(), users.len())
        );
        let mut q = sqlx::query_as(&sql);
        for r in rooms {
            q = q.bind(r);
        }
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool).await
    }

    pub async fn current_state_event(
        &self,
        room: &str,
        kind: &str,
        key: &str,
    ) -> sqlx::Result<Option<EventRow>> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.room_id = $1 AND cs.type = $2 AND cs.state_key = $3"
        ))
        .bind(room)
        .bind(kind)
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// Current state entries of the rooms that changed in (since, until].
    pub async fn current_state_changed(
        &self,
        rooms: &[String],
        since: i64,
        until: i64,
    ) -> sqlx::Result<Vec<EventRow>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.room_id IN ({}) AND cs.stream_ordering > $1 AND cs.stream_ordering <= $2 ORDER BY e.stream_ordering",
            placeholders(3, rooms.len())
        );
        let mut q = sqlx::query_as(&sql).bind(since).bind(until);
        for r in rooms {
            q = q.bind(r);
        }
        q.fetch_all(&self.pool).await
    }
}
