//! To-device messages: a queue per device, read in stream order, deleted once acknowledged.

use sqlx::Row;

use super::{push_rows_from, Db, Tx};

/// A message to queue: (user, device, stream id, sender, type, content).
pub type NewToDevice = (String, String, i64, String, String, String);

/// A queued message: (stream id, sender, type, content).
pub type ToDeviceRow = (i64, String, String, String);

impl Db {
    pub async fn insert_to_device(tx: &mut Tx, rows: &[NewToDevice]) -> sqlx::Result<()> {
        for chunk in rows.chunks(400) {
            let mut sql = String::from(
                "INSERT INTO to_device (user_id, device_id, stream_id, sender, type, content) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 6);
            let mut q = sqlx::query(&sql);
            for (u, d, s, from, t, c) in chunk {
                q = q.bind(u).bind(d).bind(*s).bind(from).bind(t).bind(c);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Messages of the device in (since, until], oldest first, at most `limit`.
    pub async fn to_device_since(
        &self,
        user: &str,
        device: &str,
        since: i64,
        until: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<ToDeviceRow>> {
        sqlx::query(
            "SELECT stream_id, sender, type, content FROM to_device WHERE user_id = $1 AND device_id = $2 \
             AND stream_id > $3 AND stream_id <= $4 ORDER BY stream_id LIMIT $5",
        )
        .bind(user)
        .bind(device)
        .bind(since)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
    }

    /// Whether the device has messages at or below `upto` (delivered, waiting for deletion).
    pub async fn has_to_device_upto(
        &self,
        user: &str,
        device: &str,
        upto: i64,
    ) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3 LIMIT 1",
        )
        .bind(user)
        .bind(device)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    pub async fn delete_to_device_upto(
        &self,
        user: &str,
        device: &str,
        upto: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3",
        )
        .bind(user)
        .bind(device)
        .bind(upto)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// To-device messages waiting, every device together (metrics).
    pub async fn to_device_total(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM to_device")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        row.try_get(0)
    }

    /// (user, device, queued messages) for the devices of these users that have any.
    pub async fn to_device_queue_lengths(
        &self,
        users: &[String],
    ) -> sqlx::Result<Vec<(String, String, i64)>> {
        self.select_in(
            "SELECT user_id, device_id, COUNT(*) FROM to_device WHERE user_id IN ({in}) GROUP BY user_id, device_id",
            &[],
            users,
        )
        .await
    }

    /// Raises a stream's recorded head to `position`.
    pub async fn raise_stream_head(tx: &mut Tx, name: &str, position: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO stream_heads (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
             SET position = CASE WHEN stream_heads.position > $2 THEN stream_heads.position ELSE $2 END",
        )
        .bind(name)
        .bind(position)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// `raise_stream_head` in a transaction of its own.
    pub async fn raise_stream_head_now(&self, name: &str, position: i64) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        Self::raise_stream_head(&mut tx.tx, name, position).await?;
        tx.commit().await
    }

    pub async fn stream_head(&self, name: &str) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT position FROM stream_heads WHERE name = $1")
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|p| p.unwrap_or(0))
    }
}
