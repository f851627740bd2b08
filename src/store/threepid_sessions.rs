//! Email validation sessions (`threepid_sessions`): one per (client_secret, medium, address,
//! purpose), holding the hashes of the link token and of the code sent by email.

use sqlx::Row;

use super::{Db, Tx};

/// Wrong tokens or codes a session survives; past this it can no longer validate.
pub const MAX_FAILURES: i64 = 5;

/// A validation session.
#[derive(Debug, Clone)]
pub struct ThreepidSession {
    pub sid: String,
    pub address: String,
    pub purpose: String,
    pub next_link: Option<String>,
    pub validated_ts: Option<i64>,
    pub expires_ts: i64,
}

/// What `requestToken` asks to store.
pub struct NewSession<'a> {
    pub sid: &'a str,
    pub client_secret: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
    pub purpose: &'a str,
    pub send_attempt: i64,
    /// `None` (with `code_hash`): the session can never validate (address already in use).
    pub token_hash: Option<&'a str>,
    pub code_hash: Option<&'a str>,
    pub next_link: Option<&'a str>,
    pub now: i64,
    pub expires_ts: i64,
}

fn row(r: sqlx::any::AnyRow) -> sqlx::Result<ThreepidSession> {
    Ok(ThreepidSession {
        sid: r.try_get(0)?,
        address: r.try_get(1)?,
        purpose: r.try_get(2)?,
        next_link: r.try_get(3)?,
        validated_ts: r.try_get(4)?,
        expires_ts: r.try_get(5)?,
    })
}

const COLUMNS: &str = "sid, address, purpose, next_link, validated_ts, expires_ts";

impl Db {
    /// Starts a session, or continues the one with the same (client_secret, medium, address,
    /// purpose) when `send_attempt` is higher than its last one (new token and code, same sid).
    /// Returns the session's sid and whether an email must be sent (false: a repeated attempt).
    /// Expired sessions are purged on the way.
    pub async fn start_threepid_session(&self, s: &NewSession<'_>) -> sqlx::Result<(String, bool)> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM threepid_sessions WHERE expires_ts <= $1")
            .bind(s.now)
            .execute(&mut *tx.tx)
            .await?;
        let written = sqlx::query(
            "INSERT INTO threepid_sessions (sid, client_secret, medium, address, purpose, \
             send_attempt, token_hash, code_hash, next_link, failures, validated_ts, created_ts, \
             expires_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL, $10, $11) \
             ON CONFLICT (client_secret, medium, address, purpose) DO UPDATE SET \
             send_attempt = excluded.send_attempt, token_hash = excluded.token_hash, \
             code_hash = excluded.code_hash, next_link = excluded.next_link, failures = 0 \
             WHERE threepid_sessions.send_attempt < excluded.send_attempt RETURNING sid",
        )
        .bind(s.sid)
        .bind(s.client_secret)
        .bind(s.medium)
        .bind(s.address)
        .bind(s.purpose)
        .bind(s.send_attempt)
        .bind(s.token_hash)
        .bind(s.code_hash)
        .bind(s.next_link)
        .bind(s.now)
        .bind(s.expires_ts)
        .fetch_all(&mut *tx.tx)
        .await
        .map(super::first)?;
        let out = match written {
            Some(r) => (r.try_get(0)?, true),
            None => {
                let r = sqlx::query(
                    "SELECT sid FROM threepid_sessions WHERE client_secret = $1 AND medium = $2 \
                     AND address = $3 AND purpose = $4",
                )
                .bind(s.client_secret)
                .bind(s.medium)
                .bind(s.address)
                .bind(s.purpose)
                .fetch_all(&mut *tx.tx)
                .await
                .map(super::one)??;
                (r.try_get(0)?, false)
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    /// Marks a session validated when `secret_hash` is its link token's or its code's hash.
    /// A wrong secret counts a failure; after [`MAX_FAILURES`] the session stops validating.
    /// Returns the session when it is (now or already) validated.
    pub async fn validate_threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
        purpose: &str,
        token_hash: &str,
        code_hash: &str,
        now: i64,
    ) -> sqlx::Result<Option<ThreepidSession>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(&format!(
            "UPDATE threepid_sessions SET validated_ts = COALESCE(validated_ts, $1) \
             WHERE sid = $2 AND client_secret = $3 AND purpose = $7 AND expires_ts > $1 \
             AND failures < $4 AND (token_hash = $5 OR code_hash = $6) RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(sid)
        .bind(client_secret)
        .bind(MAX_FAILURES)
        .bind(token_hash)
        .bind(code_hash)
        .bind(purpose)
        .fetch_all(&mut *tx.tx)
        .await
        .map(super::first)?;
        if done.is_none() {
            sqlx::query(
                "UPDATE threepid_sessions SET failures = failures + 1 \
                 WHERE sid = $1 AND client_secret = $2",
            )
            .bind(sid)
            .bind(client_secret)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        done.map(row).transpose()
    }

    /// A validated, unexpired session of this purpose (not consumed).
    pub async fn validated_threepid_session(
        &self,
        sid: &str,
        client_secret: &str,
        purpose: &str,
        now: i64,
    ) -> sqlx::Result<Option<ThreepidSession>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM threepid_sessions WHERE sid = $1 AND client_secret = $2 \
             AND purpose = $3 AND validated_ts IS NOT NULL AND expires_ts > $4"
        ))
        .bind(sid)
        .bind(client_secret)
        .bind(purpose)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?
        .map(row)
        .transpose()
    }

    /// Consumes a validated session inside a transaction (single use): its address, or `None`
    /// when it is not (or no longer) there — e.g. a concurrent request used it first.
    pub async fn take_threepid_session(
        tx: &mut Tx,
        sid: &str,
        client_secret: &str,
        purpose: &str,
        now: i64,
    ) -> sqlx::Result<Option<String>> {
        let r = sqlx::query(
            "DELETE FROM threepid_sessions WHERE sid = $1 AND client_secret = $2 \
             AND purpose = $3 AND validated_ts IS NOT NULL AND expires_ts > $4 RETURNING address",
        )
        .bind(sid)
        .bind(client_secret)
        .bind(purpose)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map(super::first)?;
        r.map(|r| r.try_get(0)).transpose()
    }

    /// A password reset by email: the new hash, inside the transaction that used the session.
    pub async fn reset_password_hash(tx: &mut Tx, user_id: &str, hash: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
