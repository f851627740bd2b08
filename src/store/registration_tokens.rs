//! Registration tokens (Synapse's `registration_tokens`): the admin API's rows, the start-up seed
//! from the configuration, and the pending/completed counters the registration UIA moves.

use super::{Db, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegistrationTokenRow {
    pub token: String,
    /// None: unlimited.
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    /// Milliseconds since the epoch; None: never expires.
    pub expiry_time: Option<i64>,
}

const COLS: &str = "token, uses_allowed, pending, completed, expiry_time";

/// A token still usable at the time in placeholder `$now` (Synapse's test): not expired, and
/// not every allowed use taken by a registration or a pending UIA session. Never NULL, so
/// `NOT (…)` is its complement.
fn usable(now: usize) -> String {
    format!(
        "(expiry_time IS NULL OR expiry_time > ${now}) \
         AND (uses_allowed IS NULL OR pending + completed < uses_allowed)"
    )
}

/// The changes of `PUT /registration_tokens/{token}`: `None` leaves a field as it is,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenChanges {
    pub uses_allowed: Option<Option<i64>>,
    pub expiry_time: Option<Option<i64>>,
}

impl Db {
    /// Inserts each configured token absent from the table (unlimited, no expiry), with the uses
    /// counted before the table existed; never changes a present one. Answers those inserted.
    pub async fn seed_registration_tokens(&self, tokens: &[String]) -> sqlx::Result<Vec<String>> {
        let mut inserted = vec![];
        if tokens.is_empty() {
            return Ok(inserted);
        }
        let mut tx = self.begin_write().await?;
        for t in tokens {
            let res = sqlx::query(
                "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time) \
                 SELECT $1, NULL, 0, COALESCE((SELECT completed FROM registration_token_uses \
                 WHERE token = $1), 0), NULL \
                 ON CONFLICT (token) DO NOTHING",
            )
            .bind(t)
            .execute(&mut *tx.tx)
            .await?;
            if res.rows_affected() > 0 {
                inserted.push(t.clone());
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Every token, by name; `valid` keeps only the usable (true) or unusable (false) ones.
    pub async fn list_registration_tokens(
        &self,
        valid: Option<bool>,
        now: i64,
    ) -> sqlx::Result<Vec<RegistrationTokenRow>> {
        let filter = match valid {
            None => {
                return sqlx::query_as(&format!(
                    "SELECT {COLS} FROM registration_tokens ORDER BY token"
                ))
                .fetch_all(&self.pool)
                .await
            }
            Some(true) => usable(1),
            Some(false) => format!("NOT ({})", usable(1)),
        };
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM registration_tokens WHERE {filter} ORDER BY token"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn registration_token(
        &self,
        token: &str,
    ) -> sqlx::Result<Option<RegistrationTokenRow>> {
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM registration_tokens WHERE token = $1"
        ))
        .bind(token)
        .fetch_optional(&self.pool)
        .await
    }

    /// Whether the token exists and is usable at `now`.
    pub async fn registration_token_usable(&self, token: &str, now: i64) -> sqlx::Result<bool> {
        let row: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT token FROM registration_tokens WHERE token = $1 AND {}",
            usable(2)
        ))
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// False when the token already exists.
    pub async fn insert_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<i64>,
        expiry_time: Option<i64>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time) \
             VALUES ($1, $2, 0, 0, $3) ON CONFLICT (token) DO NOTHING",
        )
        .bind(token)
        .bind(uses_allowed)
        .bind(expiry_time)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    /// The changed row; None when there is no such token.
    pub async fn update_registration_token(
        &self,
        token: &str,
        changes: TokenChanges,
    ) -> sqlx::Result<Option<RegistrationTokenRow>> {
        let mut sets = vec![];
        let mut values = vec![];
        if let Some(v) = changes.uses_allowed {
            sets.push(format!("uses_allowed = ${}", sets.len() + 2));
            values.push(v);
        }
        if let Some(v) = changes.expiry_time {
            sets.push(format!("expiry_time = ${}", sets.len() + 2));
            values.push(v);
        }
        if sets.is_empty() {
            return self.registration_token(token).await;
        }
        let sql = format!(
            "UPDATE registration_tokens SET {} WHERE token = $1 RETURNING {COLS}",
            sets.join(", ")
        );
        let mut tx = self.begin_write().await?;
        let mut q = sqlx::query_as(&sql).bind(token);
        for v in values {
            q = q.bind(v);
        }
        let row = q.fetch_optional(&mut *tx.tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// False when there is no such token.
    pub async fn delete_registration_token(&self, token: &str) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
            .bind(token)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    /// The registration UIA passed `m.login.registration_token` with this token: records the
    /// token on the session, with the stages the session has completed (`completed`, JSON), and
    /// takes one pending use if the token is usable at `now`, in one transaction. Both writes
    /// are guarded: a session holds at most one use (two requests racing on one session take
    /// one), and two sessions racing for a token's last use cannot both get it. True when the
    /// session now holds a use of this token; false (nothing changed) when the token is
    /// unknown, expired or used up, or the session already holds another token.
    pub async fn reserve_registration_token(
        &self,
        session: &str,
        completed: &str,
        token: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO uia_sessions (session_id, user_id, completed, created_ts, registration_token) \
             VALUES ($1, NULL, $2, $3, $4) \
             ON CONFLICT (session_id) DO UPDATE SET completed = $2, registration_token = $4 \
             WHERE uia_sessions.registration_token IS NULL",
        )
        .bind(session)
        .bind(completed)
        .bind(now)
        .bind(token)
        .execute(&mut *tx.tx)
        .await?;
        if recorded.rows_affected() == 0 {
            let held: Option<(Option<String>,)> =
                sqlx::query_as("SELECT registration_token FROM uia_sessions WHERE session_id = $1")
                    .bind(session)
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            return Ok(held.and_then(|(t,)| t).as_deref() == Some(token));
        }
        let taken = sqlx::query(&format!(
            "UPDATE registration_tokens SET pending = pending + 1 WHERE token = $1 AND {}",
            usable(2)
        ))
        .bind(token)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A registration with the token held by this UIA session completes (in the registration's
    /// transaction): the session's pending use becomes a completed one and the session is
    /// deleted. False when the session holds no pending use of this token any more (another
    /// registration consumed it, the session expired, or the token was deleted): the caller
    /// refuses the registration.
    pub async fn complete_registration_token(
        tx: &mut Tx,
        session: &str,
        token: &str,
    ) -> sqlx::Result<bool> {
        let held: Option<(String,)> = sqlx::query_as(
            "DELETE FROM uia_sessions WHERE session_id = $1 AND registration_token = $2 \
             RETURNING session_id",
        )
        .bind(session)
        .bind(token)
        .fetch_optional(&mut **tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        let res = sqlx::query(
            "UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1 \
             WHERE token = $1 AND pending > 0",
        )
        .bind(token)
        .execute(&mut **tx)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Gives back the pending uses of the registration UIA sessions deleted (expired).
    pub(super) async fn release_registration_tokens(
        tx: &mut Tx,
        tokens: &[String],
    ) -> sqlx::Result<()> {
        for t in tokens {
            sqlx::query(
                "UPDATE registration_tokens SET pending = pending - 1 \
                 WHERE token = $1 AND pending > 0",
            )
            .bind(t)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
