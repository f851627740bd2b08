//! Read receipts.

use sqlx::Row;

use super::Db;

/// (room, receipt type, user, thread id or "", event id, ts).
pub type ReceiptRow = (String, String, String, String, String, i64);

impl Db {
    /// The event a user's receipt of this type and thread points at.
    pub async fn receipt_event(
        &self,
        room: &str,
        kind: &str,
        user: &str,
        thread: &str,
    ) -> sqlx::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT event_id FROM receipts WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4",
        )
        .bind(room)
        .bind(kind)
        .bind(user)
        .bind(thread)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_receipt(
        &self,
        room: &str,
        kind: &str,
        user: &str,
        thread: &str,
        event_id: &str,
        ts: i64,
        stream: i64,
        read_upto: i64,
        fin: Option<&super::cluster::Finish<'_>>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        // The receipt covers the user's notifications up to the event (of its thread, when it
        // is threaded).
        let thread_filter = (!thread.is_empty()).then_some(thread);
        Self::mark_push_read(&mut tx.tx, user, room, read_upto, thread_filter).await?;
        sqlx::query(
            "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, receipt_type, user_id, thread_id) \
             DO UPDATE SET event_id = $5, ts = $6, stream_id = $7",
        )
        .bind(room)
        .bind(kind)
        .bind(user)
        .bind(thread)
        .bind(event_id)
        .bind(ts)
        .bind(stream)
        .execute(&mut *tx.tx)
        .await?;
        self.finish_positions(&mut tx.tx, fin).await?;
        tx.commit().await
    }

    /// Receipts in the rooms the user is joined to: all of them (`since` None, initial sync) or
    /// those that changed in (since, until].
    pub async fn receipts_for(
        &self,
        user: &str,
        since: Option<i64>,
        until: i64,
    ) -> sqlx::Result<Vec<ReceiptRow>> {
        let rows = match since {
            None => {
                sqlx::query(
                    "SELECT r.room_id, r.receipt_type, r.user_id, r.thread_id, r.event_id, r.ts FROM receipts r \
                     JOIN memberships m ON m.room_id = r.room_id \
                     WHERE m.user_id = $1 AND m.membership = 'join' AND r.stream_id <= $2",
                )
                .bind(user)
                .bind(until)
                .fetch_all(&self.pool)
                .await?
            }
            Some(since) => {
                sqlx::query(
                    "SELECT r.room_id, r.receipt_type, r.user_id, r.thread_id, r.event_id, r.ts FROM receipts r \
                     JOIN memberships m ON m.room_id = r.room_id AND m.user_id = $1 AND m.membership = 'join' \
                     WHERE r.stream_id > $2 AND r.stream_id <= $3",
                )
                .bind(user)
                .bind(since)
                .bind(until)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                ))
            })
            .collect()
    }

    pub async fn max_receipt_stream(&self) -> sqlx::Result<i64> {
        sqlx::query("SELECT COALESCE(MAX(stream_id), 0) FROM receipts")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }
}
