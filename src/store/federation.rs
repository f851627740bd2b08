//! Federation: other servers' signing keys (verified, cached) and their signed key responses.

use sqlx::Row;

use super::Db;

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
