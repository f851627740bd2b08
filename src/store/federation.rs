//! Federation: other servers' signing keys (verified, cached) and their signed key responses.

use sqlx::Row;

use super::{
    events::{EventRow, EVENT_COLS},
    placeholders, Db, Tx,
};

/// A queued EDU: (id, destination, edu_type, content JSON).
pub type EduRow = (i64, String, String, String);
/// A queued PDU: (outbox id, event json, room id, stream ordering).
pub type OutboxPdu = (i64, String, String, i64);

/// A cached verify key of another server.
#[derive(Debug, Clone)]
pub struct ServerKeyRow {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
}

impl Db {
    pub async fn server_keys(&self, server: &str) -> sqlx::Result<Vec<ServerKeyRow>> {
        sqlx::query(
            "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys WHERE server_name = $1",
        )
        .bind(server)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(ServerKeyRow {
                key_id: r.try_get(0)?,
                public_key: r.try_get(1)?,
                valid_until_ts: r.try_get(2)?,
                expired_ts: r.try_get(3)?,
            })
        })
        .collect()
    }

    /// Stores the keys of a verified key response, and the response itself.
    pub async fn store_server_keys(
        &self,
        server: &str,
        keys: &[ServerKeyRow],
        response: &str,
        valid_until_ts: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (server_name, key_id) DO UPDATE SET \
                 public_key = $3, valid_until_ts = $4, expired_ts = $5, fetched_ts = $6",
            )
            .bind(server)
            .bind(&k.key_id)
            .bind(&k.public_key)
            .bind(k.valid_until_ts)
            .bind(k.expired_ts)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO server_key_responses (server_name, json, valid_until_ts, fetched_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (server_name) DO UPDATE SET json = $2, \
             valid_until_ts = $3, fetched_ts = $4",
        )
        .bind(server)
        .bind(response)
        .bind(valid_until_ts)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The last signed key response of a server and its validity.
    pub async fn server_key_response(&self, server: &str) -> sqlx::Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT json, valid_until_ts FROM server_key_responses WHERE server_name = $1",
        )
        .bind(server)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}

impl Db {
    /// Every event in the auth chains of `ids` (not `ids` themselves unless reached), with a
    /// recursive query.
    pub async fn auth_chain(&self, ids: &[String]) -> sqlx::Result<Vec<EventRow>> {
        // In chunks: PostgreSQL takes at most 65 535 parameters per statement, and a big room's
        // state has more events than that. Chains overlap: each event is kept once.
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<EventRow> = self
            .select_in(
                &format!(
                    "WITH RECURSIVE chain(id) AS ( \
                       SELECT auth_id FROM event_auth WHERE event_id IN ({{in}}) \
                       UNION SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id ) \
                     SELECT {EVENT_COLS} FROM events e JOIN chain ON e.event_id = chain.id"
                ),
                &[],
                ids,
            )
            .await?;
        out.retain(|row| seen.insert(row.event_id.clone()));
        out.sort_by_key(|r| r.stream_ordering);
        Ok(out)
    }

    /// The largest id of both outboxes (PDUs and EDUs share one counter).
    pub async fn max_outbox_id(&self) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) FROM (SELECT id FROM federation_outbox \
             UNION ALL SELECT id FROM federation_edu_outbox) ids",
        )
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        row.try_get(0)
    }

    /// (PDU rows, EDU rows) waiting in the outboxes, every destination together (metrics).
    pub async fn outbox_depths(&self) -> sqlx::Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM federation_outbox), \
             (SELECT COUNT(*) FROM federation_edu_outbox)",
        )
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Queues events for destinations: (id, destination, event_id).
    pub async fn enqueue_outbox(&self, rows: &[(i64, String, String)]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        Self::insert_outbox(&mut tx.tx, rows).await?;
        tx.commit().await
    }

    /// `enqueue_outbox` inside the caller's transaction (the events' own, so that a committed
    /// local event is always queued for the other servers).
    pub async fn insert_outbox(tx: &mut Tx, rows: &[(i64, String, String)]) -> sqlx::Result<()> {
        for chunk in rows.chunks(100) {
            let mut sql =
                String::from("INSERT INTO federation_outbox (id, destination, event_id) VALUES ");
            super::push_rows_from(&mut sql, 1, chunk.len(), 3);
            let mut q = sqlx::query(&sql);
            for (id, d, e) in chunk {
                q = q.bind(*id).bind(d).bind(e);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The next queued events of a destination (id, event json, room, stream ordering), in
    /// the events' stream order: a room's events
    /// in the order they were written (outbox ids are made by each node of a cluster on its
    /// own, so their order across nodes is not the events' — a peer sent a child before its
    /// parent would have to fetch the parent).
    pub async fn outbox_batch(&self, dest: &str, limit: i64) -> sqlx::Result<Vec<OutboxPdu>> {
        sqlx::query(
            "SELECT o.id, e.json, e.room_id, e.stream_ordering FROM federation_outbox o \
             JOIN events e ON e.event_id = o.event_id \
             WHERE o.destination = $1 ORDER BY e.stream_ordering, o.id LIMIT $2",
        )
        .bind(dest)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
    }

    /// Removes what a destination accepted: these PDU and EDU rows (by id, not by range: a
    /// row queued meanwhile with a smaller id must stay).
    pub async fn outbox_done(&self, dest: &str, pdus: &[i64], edus: &[i64]) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for (table, ids) in [("federation_outbox", pdus), ("federation_edu_outbox", edus)] {
            for chunk in ids.chunks(200) {
                let sql = format!(
                    "DELETE FROM {table} WHERE destination = $1 AND id IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(dest);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx.tx).await?;
            }
        }
        tx.commit().await
    }

    /// Queues EDUs in the caller's transaction: (id, destination, edu_type, content).
    pub async fn insert_edu_outbox(tx: &mut Tx, rows: &[EduRow]) -> sqlx::Result<()> {
        for chunk in rows.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO federation_edu_outbox (id, destination, edu_type, content) VALUES ",
            );
            super::push_rows_from(&mut sql, 1, chunk.len(), 4);
            let mut q = sqlx::query(&sql);
            for (id, d, t, c) in chunk {
                q = q.bind(*id).bind(d).bind(t).bind(c);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The next queued EDUs of a destination: (id, edu_type, content).
    pub async fn edu_outbox_batch(
        &self,
        dest: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, String, String)>> {
        sqlx::query(
            "SELECT id, edu_type, content FROM federation_edu_outbox \
             WHERE destination = $1 ORDER BY id LIMIT $2",
        )
        .bind(dest)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
    }

    /// Records a to-device EDU as delivered in the caller's transaction; false when it already
    /// was.
    pub async fn claim_received_edu(
        tx: &mut Tx,
        origin: &str,
        message_id: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO federation_received_edus (origin, message_id, received_ts) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(origin)
        .bind(message_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets delivered to-device EDU ids received before `before` (a retried transaction
    /// comes back within the sender's backoff cap, a day by default; callers keep a week).
    pub async fn prune_received_edus(&self, before: i64) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM federation_received_edus WHERE received_ts < $1")
            .bind(before)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Destinations with something queued (restart catch-up).
    pub async fn outbox_destinations(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query(
            "SELECT destination FROM federation_outbox \
             UNION SELECT destination FROM federation_edu_outbox",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| r.try_get(0))
        .collect()
    }

    pub async fn federation_txn(&self, origin: &str, txn: &str) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT response FROM federation_txns WHERE origin = $1 AND txn_id = $2")
                .bind(origin)
                .bind(txn)
                .fetch_all(&self.pool)
                .await
                .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub async fn store_federation_txn(
        &self,
        origin: &str,
        txn: &str,
        response: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO federation_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(origin)
        .bind(txn)
        .bind(response)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }
}

impl Db {
    /// The prev events of some events.
    pub async fn prev_events_of(&self, ids: &[String]) -> sqlx::Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT DISTINCT prev_event_id FROM event_edges WHERE event_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect()
    }
}
