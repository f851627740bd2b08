//! Account validity (`account_validity`, `account_renewal_tokens`) and the leases of background
//! jobs (`background_leases`).

use sqlx::Row;

use super::{Db, Tx};

/// The validity of one account.
#[derive(Debug, Clone)]
pub struct ValidityRow {
    pub user_id: String,
    pub expiration_ts: i64,
    pub reminder_days_sent: Option<i64>,
    pub email_sent_ts: Option<i64>,
    pub enable_renewal_emails: bool,
}

/// What using a renewal token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// No such token.
    Unknown,
    /// The token was used before (or a newer link was used): the current expiration.
    AlreadyUsed { user_id: String, expiration_ts: i64 },
    /// Renewed until `expiration_ts`.
    Renewed { user_id: String, expiration_ts: i64 },
}

const COLS: &str =
    "user_id, expiration_ts, reminder_days_sent, email_sent_ts, enable_renewal_emails";

fn row(r: &sqlx::any::AnyRow) -> sqlx::Result<ValidityRow> {
    Ok(ValidityRow {
        user_id: r.try_get(0)?,
        expiration_ts: r.try_get(1)?,
        reminder_days_sent: r.try_get(2)?,
        email_sent_ts: r.try_get(3)?,
        enable_renewal_emails: r.try_get::<i64, _>(4)? == 1,
    })
}

impl Db {
    /// The validity of a new account (inside its registration transaction).
    pub async fn insert_validity(
        tx: &mut Tx,
        user_id: &str,
        expiration_ts: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO account_validity (user_id, expiration_ts) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(expiration_ts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn validity(&self, user_id: &str) -> sqlx::Result<Option<ValidityRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM account_validity WHERE user_id = $1"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        super::first(rows).map(|r| row(&r)).transpose()
    }

    /// The expirations of those of `users` that have one (batches of 500).
    pub async fn expirations(&self, users: &[String]) -> sqlx::Result<Vec<(String, i64)>> {
        self.select_in(
            "SELECT user_id, expiration_ts FROM account_validity WHERE user_id IN ({in})",
            &[],
            users,
        )
        .await
    }

    /// Sets an account's expiration (admin, renewal): the reminders start over. `enable` None
    /// keeps the current setting (on for a new row).
    pub async fn set_validity(
        &self,
        user_id: &str,
        expiration_ts: i64,
        enable: Option<bool>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        Self::set_validity_tx(&mut tx.tx, user_id, expiration_ts, enable).await?;
        tx.commit().await
    }

    async fn set_validity_tx(
        tx: &mut Tx,
        user_id: &str,
        expiration_ts: i64,
        enable: Option<bool>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO account_validity (user_id, expiration_ts, enable_renewal_emails) \
             VALUES ($1, $2, COALESCE($3, 1)) ON CONFLICT (user_id) DO UPDATE SET \
             expiration_ts = excluded.expiration_ts, reminder_days_sent = NULL, \
             expiry_noticed = 0, enable_renewal_emails = \
             COALESCE($3, account_validity.enable_renewal_emails)",
        )
        .bind(user_id)
        .bind(expiration_ts)
        .bind(enable.map(i64::from))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records a renewal link (its hash) sent to a user.
    pub async fn insert_renewal_token(
        &self,
        token_hash: &str,
        user_id: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO account_renewal_tokens (token_hash, user_id, created_ts) \
             VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("UPDATE account_validity SET email_sent_ts = $1 WHERE user_id = $2")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Uses a renewal token: once only (every pending token of the user is used with it), and
    /// never for a deactivated account.
    pub async fn use_renewal_token(
        &self,
        token_hash: &str,
        now: i64,
        new_expiration: i64,
    ) -> sqlx::Result<RenewOutcome> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(
            "SELECT t.user_id, t.used_ts, COALESCE(v.expiration_ts, 0) \
             FROM account_renewal_tokens t JOIN users u ON u.user_id = t.user_id \
             LEFT JOIN account_validity v ON v.user_id = t.user_id \
             WHERE t.token_hash = $1 AND u.deactivated = 0",
        )
        .bind(token_hash)
        .fetch_all(&mut *tx.tx)
        .await
        .map(super::first)?;
        let Some(found) = found else {
            tx.tx.rollback().await?;
            return Ok(RenewOutcome::Unknown);
        };
        let user_id: String = found.try_get(0)?;
        let used: Option<i64> = found.try_get(1)?;
        let current: i64 = found.try_get(2)?;
        let claimed = used.is_none()
            && sqlx::query(
                "UPDATE account_renewal_tokens SET used_ts = $1 \
                 WHERE token_hash = $2 AND used_ts IS NULL",
            )
            .bind(now)
            .bind(token_hash)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected()
                == 1;
        if !claimed {
            tx.tx.rollback().await?;
            return Ok(RenewOutcome::AlreadyUsed {
                user_id,
                expiration_ts: current,
            });
        }
        sqlx::query(
            "UPDATE account_renewal_tokens SET used_ts = $1 WHERE user_id = $2 AND used_ts IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx.tx)
        .await?;
        Self::set_validity_tx(&mut tx.tx, &user_id, new_expiration, None).await?;
        tx.commit().await?;
        Ok(RenewOutcome::Renewed {
            user_id,
            expiration_ts: new_expiration,
        })
    }

    /// Gives every active account without a validity row (accounts older than the setting) an
    /// expiration spread evenly over `[latest - spread, latest]` (in user id order, 1 000 steps)
    /// so that they do not all get their reminders, expire and get deactivated on one day;
    /// `except` (the server notices user) is left alone. Returns how many.
    pub async fn validity_backfill(
        &self,
        latest: i64,
        spread: i64,
        except: &str,
    ) -> sqlx::Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO account_validity (user_id, expiration_ts) \
             SELECT u.user_id, $1 - (ROW_NUMBER() OVER (ORDER BY u.user_id) % 1000) * $2 \
             FROM users u WHERE u.deactivated = 0 AND u.user_id <> $3 \
             AND NOT EXISTS (SELECT 1 FROM account_validity v WHERE v.user_id = u.user_id)",
        )
        .bind(latest)
        .bind(spread / 1000)
        .bind(except)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Accounts expiring in `(now, horizon]` with renewal emails on and not yet reminded at
    /// `below_days` or less, soonest first.
    pub async fn validity_reminder_candidates(
        &self,
        now: i64,
        horizon: i64,
        below_days: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<ValidityRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM account_validity \
             WHERE expiration_ts > $1 AND expiration_ts <= $2 AND enable_renewal_emails = 1 \
             AND (reminder_days_sent IS NULL OR reminder_days_sent > $3) \
             ORDER BY expiration_ts LIMIT $4"
        ))
        .bind(now)
        .bind(horizon)
        .bind(below_days)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    /// Records the reminder sent at `days` before `expiration_ts` (unless the account was
    /// renewed meanwhile).
    pub async fn mark_reminder_sent(
        &self,
        user_id: &str,
        expiration_ts: i64,
        days: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE account_validity SET reminder_days_sent = $1 \
             WHERE user_id = $2 AND expiration_ts = $3",
        )
        .bind(days)
        .bind(user_id)
        .bind(expiration_ts)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Accounts expired at `now` that the job has not announced yet; marks them announced.
    pub async fn take_newly_expired(&self, now: i64, limit: i64) -> sqlx::Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT user_id FROM account_validity WHERE expiration_ts <= $1 AND expiry_noticed = 0 \
             ORDER BY expiration_ts LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx.tx)
        .await?;
        let users: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<sqlx::Result<_>>()?;
        if !users.is_empty() {
            let sql = format!(
                "UPDATE account_validity SET expiry_noticed = 1 WHERE user_id IN ({})",
                super::placeholders(1, users.len())
            );
            let mut q = sqlx::query(&sql);
            for u in &users {
                q = q.bind(u);
            }
            q.execute(&mut *tx.tx).await?;
        }
        tx.commit().await?;
        Ok(users)
    }

    /// Active accounts that expired before `cutoff`, oldest first.
    pub async fn validity_past_grace(&self, cutoff: i64, limit: i64) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT v.user_id FROM account_validity v JOIN users u ON u.user_id = v.user_id \
             WHERE v.expiration_ts < $1 AND u.deactivated = 0 ORDER BY v.expiration_ts LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// Forgets a (deactivated) account's validity and renewal links.
    pub async fn delete_validity(&self, user_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM account_validity WHERE user_id = $1",
            "DELETE FROM account_renewal_tokens WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    /// Drops renewal links created before `before`.
    pub async fn prune_renewal_tokens(&self, before: i64) -> sqlx::Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM account_renewal_tokens WHERE created_ts < $1")
            .bind(before)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// The bound addresses of `medium` of several users: (user_id, address).
    pub async fn threepids_of_users(
        &self,
        medium: &str,
        users: &[String],
    ) -> sqlx::Result<Vec<(String, String)>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT user_id, address FROM user_threepids WHERE medium = $1 AND user_id IN ({}) \
             ORDER BY added_ts, address",
            super::placeholders(2, users.len())
        );
        let mut q = sqlx::query(&sql).bind(medium);
        for u in users {
            q = q.bind(u);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Takes (or keeps) the lease `name` for `holder` until `now + ttl_ms`: true when `holder`
    /// has it. Free, expired or already held by `holder`: taken; otherwise not.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO background_leases (name, holder, expires_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_ts = excluded.expires_ts \
             WHERE background_leases.holder = excluded.holder OR background_leases.expires_ts <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a lease back (graceful stop) so another process may take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM background_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}

impl Db {
    /// A user's server notices room.
    pub async fn server_notice_room(&self, user_id: &str) -> sqlx::Result<Option<String>> {
        let rows = sqlx::query("SELECT room_id FROM server_notice_rooms WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        super::first(rows).map(|r| r.try_get(0)).transpose()
    }

    /// Records a user's server notices room (replacing a previous one).
    pub async fn set_server_notice_room(
        &self,
        user_id: &str,
        room_id: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO server_notice_rooms (user_id, room_id, created_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id, \
             created_ts = excluded.created_ts",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }
}
