//! What the history purge and the redaction of a user's events read and write: the point a
//! purge goes up to, its chunks (events deleted with what hangs on them, or hidden from the
//! timeline as outliers), and the events a user sent in a room.

use sqlx::Row;

use super::{events::EventRow, events::EVENT_COLS, placeholders, Db, Dialect};

/// An event of a purge's chunk, as the service judges it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PurgeCandidate {
    pub event_id: String,
    pub sender: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub state_key: Option<String>,
}

/// Tables keyed by an event id: emptied of the events a purge deletes.
const BY_EVENT: &[(&str, &str)] = &[
    ("event_edges", "event_id"),
    ("event_auth", "event_id"),
    ("event_relations", "event_id"),
    ("event_push_actions", "event_id"),
    ("federation_outbox", "event_id"),
    ("txn_ids", "event_id"),
    ("pending_redactions", "redaction_id"),
];

impl Db {
    /// An event's room and depth (its place in the DAG), rejected or not.
    pub async fn event_room_depth(&self, event_id: &str) -> sqlx::Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT room_id, depth FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// The depth of the first timeline event of the room sent at or after `ts`, else of its
    /// latest timeline event; `None` for a room without any.
    pub async fn purge_point_at_ts(&self, room_id: &str, ts: i64) -> sqlx::Result<Option<i64>> {
        let live = "rejected = 0 AND outlier = 0 AND soft_failed = 0";
        let after = sqlx::query(&format!(
            "SELECT depth FROM events WHERE room_id = $1 AND origin_server_ts >= $2 AND {live} \
             ORDER BY stream_ordering ASC LIMIT 1"
        ))
        .bind(room_id)
        .bind(ts)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        let row = match after {
            Some(r) => Some(r),
            None => sqlx::query(&format!(
                "SELECT depth FROM events WHERE room_id = $1 AND {live} \
                 ORDER BY stream_ordering DESC LIMIT 1"
            ))
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?,
        };
        row.map(|r| r.try_get(0)).transpose()
    }

    /// How many timeline events of the room lie below `depth` (what a purge has to go over).
    pub async fn count_events_below(&self, room_id: &str, depth: i64) -> sqlx::Result<i64> {
        sqlx::query("SELECT COUNT(*) FROM events WHERE room_id = $1 AND depth < $2 AND outlier = 0")
            .bind(room_id)
            .bind(depth)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }

    /// The room's oldest `limit` events below `depth` still in the timeline, forward
    /// extremities left out (new events cite them): a purge's next chunk. Events already purged
    /// are gone or outliers, so a chunk cut short is simply chosen again.
    pub async fn purge_history_candidates(
        &self,
        room_id: &str,
        depth: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<PurgeCandidate>> {
        sqlx::query_as(
            "SELECT event_id, sender, type, state_key FROM events WHERE room_id = $1 \
             AND depth < $2 AND outlier = 0 AND event_id NOT IN \
             (SELECT event_id FROM forward_extremities WHERE room_id = $1) \
             ORDER BY stream_ordering LIMIT $3",
        )
        .bind(room_id)
        .bind(depth)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// One chunk of a purge, one transaction: `delete` goes with its edges, relations, push
    /// actions, queued sends and search entries; `hide` stays known (state, auth, local
    /// events kept) but leaves the timeline as outliers.
    pub async fn purge_history_chunk(
        &self,
        room_id: &str,
        delete: &[String],
        hide: &[String],
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        if !delete.is_empty() {
            let ids = placeholders(2, delete.len());
            let search_col = match self.dialect {
                Dialect::Sqlite => "rowid",
                Dialect::Postgres => "stream_ordering",
            };
            // Everything hanging on the events first, the events last (the search entries
            // are found through them).
            let mut statements: Vec<String> = vec![format!(
                "DELETE FROM event_search WHERE {search_col} IN \
                 (SELECT stream_ordering FROM events WHERE room_id = $1 AND event_id IN ({ids}))"
            )];
            statements.extend(BY_EVENT.iter().map(|(table, col)| {
                format!(
                    "DELETE FROM {table} WHERE {col} IN (SELECT event_id FROM events \
                     WHERE room_id = $1 AND event_id IN ({ids}))"
                )
            }));
            statements.push(format!(
                "DELETE FROM events WHERE room_id = $1 AND event_id IN ({ids})"
            ));
            for sql in &statements {
                let mut q = sqlx::query(sql).bind(room_id);
                for id in delete {
                    q = q.bind(id);
                }
                q.execute(&mut *tx.tx).await?;
            }
        }
        if !hide.is_empty() {
            // Out of the timeline, out of the unread counts too.
            let ids = placeholders(2, hide.len());
            for sql in [
                format!(
                    "DELETE FROM event_push_actions WHERE room_id = $1 AND event_id IN ({ids})"
                ),
                format!("UPDATE events SET outlier = 1 WHERE room_id = $1 AND event_id IN ({ids})"),
            ] {
                let mut q = sqlx::query(&sql).bind(room_id);
                for id in hide {
                    q = q.bind(id);
                }
                q.execute(&mut *tx.tx).await?;
            }
        }
        tx.commit().await
    }

    /// The newest `limit` timeline events `sender` sent in the room, newest first.
    pub async fn events_sent_by(
        &self,
        room_id: &str,
        sender: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<EventRow>> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events e WHERE e.room_id = $1 AND e.sender = $2 \
             AND e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0 \
             ORDER BY e.stream_ordering DESC LIMIT $3"
        ))
        .bind(room_id)
        .bind(sender)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
