//! Account data (global and per room) and stored sync filters.

use sqlx::Row;

use super::Db;

impl Db {
    pub async fn put_account_data(
        &self,
        user: &str,
        room: &str,
        kind: &str,
        content: &str,
        stream: i64,
        fin: Option<&super::cluster::Finish<'_>>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = $4, stream_id = $5",
        )
        .bind(user)
        .bind(room)
        .bind(kind)
        .bind(content)
        .bind(stream)
        .execute(&mut *tx.tx)
        .await?;
        self.finish_positions(&mut tx.tx, fin).await?;
        tx.commit().await
    }

    pub async fn get_account_data(
        &self,
        user: &str,
        room: &str,
        kind: &str,
    ) -> sqlx::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
        )
        .bind(user)
        .bind(room)
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// One global account data type of several users: (user, content).
    pub async fn global_account_data_of(
        &self,
        users: &[String],
        kind: &str,
    ) -> sqlx::Result<Vec<(String, String)>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT user_id, content FROM account_data WHERE room_id = '' AND type = $1 AND user_id IN ({})",
            super::placeholders(2, users.len())
        );
        let mut q = sqlx::query(&sql).bind(kind);
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// (room_id or "", type, content) changed in (since, until].
    pub async fn account_data_since(
        &self,
        user: &str,
        since: i64,
        until: i64,
    ) -> sqlx::Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3 \
             ORDER BY stream_id",
        )
        .bind(user)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn max_account_data_stream(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(stream_id), 0) FROM account_data")
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?;
        row.try_get(0)
    }

    pub async fn insert_filter(&self, user: &str, json: &str) -> sqlx::Result<i64> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = $1")
                .bind(user)
                .fetch_all(&mut *tx.tx)
                .await
                .and_then(super::one)?;
        let id: i64 = row.try_get(0)?;
        sqlx::query("INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3)")
            .bind(user)
            .bind(id)
            .bind(json)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn get_filter(&self, user: &str, id: i64) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }
}
