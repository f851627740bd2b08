//! Email addresses bound to local accounts (`user_threepids`) and pending email invitations
//! (`email_invites`). Addresses are stored in their canonical form (`policy::email::normalise`).

use sqlx::Row;

use super::{Db, Tx};

/// A bound address of a user.
#[derive(Debug, Clone)]
pub struct ThreepidRow {
    pub medium: String,
    pub address: String,
    pub validated_ts: i64,
    pub added_ts: i64,
}

/// A pending (or resolved) email invitation.
#[derive(Debug, Clone)]
pub struct EmailInviteRow {
    pub token: String,
    pub origin: String,
    pub room_id: String,
    pub address: String,
    pub sender: String,
    pub created_ts: i64,
}

impl Db {
    /// Binds an address to a user inside a transaction. False when it is bound already (to
    /// anyone): the primary key settles registration races.
    pub async fn bind_threepid(
        tx: &mut Tx,
        medium: &str,
        address: &str,
        user_id: &str,
        validated_ts: i64,
        now: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING",
        )
        .bind(medium)
        .bind(address)
        .bind(user_id)
        .bind(validated_ts)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Unbinds an address from a user; true when it was bound to them.
    pub async fn unbind_threepid(
        &self,
        medium: &str,
        address: &str,
        user_id: &str,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM user_threepids WHERE medium = $1 AND address = $2 AND user_id = $3",
        )
        .bind(medium)
        .bind(address)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Unbinds every address of a user (deactivation, as Synapse): the addresses become free
    /// for a new account.
    pub async fn unbind_all_threepids(&self, user_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM user_threepids WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// The local user an address is bound to.
    pub async fn threepid_owner(
        &self,
        medium: &str,
        address: &str,
    ) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2")
                .bind(medium)
                .bind(address)
                .fetch_all(&self.pool)
                .await
                .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Every address bound to a user, oldest first.
    pub async fn user_threepids(&self, user_id: &str) -> sqlx::Result<Vec<ThreepidRow>> {
        let rows = sqlx::query(
            "SELECT medium, address, validated_ts, added_ts FROM user_threepids \
             WHERE user_id = $1 ORDER BY added_ts, address",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ThreepidRow {
                    medium: r.try_get(0)?,
                    address: r.try_get(1)?,
                    validated_ts: r.try_get(2)?,
                    added_ts: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records an email invitation (idempotent on `(origin, token)`).
    pub async fn insert_email_invite(&self, invite: &EmailInviteRow) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO email_invites (token, origin, room_id, address, sender, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (origin, token) DO NOTHING",
        )
        .bind(&invite.token)
        .bind(&invite.origin)
        .bind(&invite.room_id)
        .bind(&invite.address)
        .bind(&invite.sender)
        .bind(invite.created_ts)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Pending (unresolved) invitations for an address, oldest first.
    pub async fn pending_email_invites(&self, address: &str) -> sqlx::Result<Vec<EmailInviteRow>> {
        let rows = sqlx::query(
            "SELECT token, origin, room_id, address, sender, created_ts FROM email_invites \
             WHERE address = $1 AND resolved_ts IS NULL ORDER BY created_ts",
        )
        .bind(address)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(EmailInviteRow {
                    token: r.try_get(0)?,
                    origin: r.try_get(1)?,
                    room_id: r.try_get(2)?,
                    address: r.try_get(3)?,
                    sender: r.try_get(4)?,
                    created_ts: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Marks an invitation resolved; true when it was pending.
    pub async fn resolve_email_invite(
        &self,
        origin: &str,
        token: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE email_invites SET resolved_ts = $1 \
             WHERE origin = $2 AND token = $3 AND resolved_ts IS NULL",
        )
        .bind(now)
        .bind(origin)
        .bind(token)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
