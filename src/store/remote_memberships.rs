//! Memberships of local users in rooms this server may not know: invites received over
//! federation, knocks sent through another server, and the leaves that reject or rescind them.
//! The membership event is an outlier in `events` and the user's row in `memberships`;
//! `remote_memberships` keeps the stripped state shown to clients and the servers to go through.

use super::{placeholders, Db, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RemoteMembershipRow {
    pub event_id: String,
    pub room_id: String,
    pub user_id: String,
    pub stripped_state: String,
    pub servers: String,
    pub room_version: String,
}

/// What an out-of-band invite or knock keeps for clients and for later joins or leaves.
pub struct NewRemoteMembership<'a> {
    pub stripped_state: &'a str,
    pub servers: &'a str,
    pub room_version: &'a str,
}

const COLS: &str = "event_id, room_id, user_id, stripped_state, servers, room_version";

impl Db {
    /// Makes `event` the one kept out-of-band membership of `user` in the room: what was kept
    /// for an earlier invite or knock is dropped, `remote` (the new invite's or knock's stripped
    /// state and servers) kept instead. In the caller's transaction (the event's own).
    pub async fn put_out_of_band(
        tx: &mut Tx,
        room_id: &str,
        user: &str,
        event: &str,
        remote: Option<&NewRemoteMembership<'_>>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM remote_memberships WHERE user_id = $1 AND room_id = $2 AND event_id <> $3",
        )
        .bind(user)
        .bind(room_id)
        .bind(event)
        .execute(&mut **tx)
        .await?;
        if let Some(r) = remote {
            sqlx::query(&format!(
                "INSERT INTO remote_memberships ({COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (event_id) DO NOTHING"
            ))
            .bind(event)
            .bind(room_id)
            .bind(user)
            .bind(r.stripped_state)
            .bind(r.servers)
            .bind(r.room_version)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// What is kept for these membership events (those that are out-of-band).
    pub async fn remote_memberships(
        &self,
        event_ids: &[String],
    ) -> sqlx::Result<Vec<RemoteMembershipRow>> {
        if event_ids.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {COLS} FROM remote_memberships WHERE event_id IN ({})",
            placeholders(1, event_ids.len())
        );
        let mut q = sqlx::query_as(&sql);
        for id in event_ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await
    }

    /// Forgets what was kept for a user's invite or knock in a room (after a join).
    pub async fn delete_remote_memberships(&self, user: &str, room: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM remote_memberships WHERE user_id = $1 AND room_id = $2")
            .bind(user)
            .bind(room)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}
