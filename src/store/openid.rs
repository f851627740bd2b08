//! OpenID tokens: short-lived tokens a user hands to a third party, which the third party
//! exchanges for the user's id through federation. Stored as SHA-256 hashes.

use sqlx::Row;

use super::Db;

impl Db {
    /// Stores a new OpenID token (by hash) and drops the expired ones.
    pub async fn insert_openid_token(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_ts: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM openid_tokens WHERE expires_ts <= $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_ts)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The user an OpenID token (by hash) was issued to, while it has not expired.
    pub async fn openid_token_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> sqlx::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }
}
