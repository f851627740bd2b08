//! Rooms, memberships (a projection of the current state) and aliases.

use sqlx::Row;

use super::{Db, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub forgotten: i64,
}

impl Db {
    pub async fn insert_room(
        tx: &mut Tx,
        room_id: &str,
        version: &str,
        creator: &str,
        public: bool,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES ($1, $2, $3, $4, $5)")
            .bind(room_id)
            .bind(version)
            .bind(creator)
            .bind(public as i64)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn room_version(&self, room_id: &str) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT room_version FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub async fn set_room_public(&self, room_id: &str, public: bool) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE rooms SET is_public = $1 WHERE room_id = $2")
            .bind(public as i64)
            .bind(room_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    pub async fn room_is_public(&self, room_id: &str) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT is_public FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0)
            == 1)
    }

    /// Sets memberships (at most one per user) in a room in one statement.
    pub async fn upsert_memberships(
        tx: &mut Tx,
        room_id: &str,
        rows: &[(&str, &str, &str, i64)],
    ) -> sqlx::Result<()> {
        for chunk in rows.chunks(100) {
            let mut sql =
                String::from("INSERT INTO memberships (user_id, room_id, membership, event_id, stream_ordering) VALUES ");
            super::events::push_rows(&mut sql, chunk.len(), 5);
            sql.push_str(
                " ON CONFLICT (user_id, room_id) DO UPDATE SET membership = excluded.membership, \
                 event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, forgotten = 0",
            );
            let mut q = sqlx::query(&sql);
            for (user, membership, event_id, stream) in chunk {
                q = q
                    .bind(*user)
                    .bind(room_id)
                    .bind(*membership)
                    .bind(*event_id)
                    .bind(*stream);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn user_memberships(&self, user_id: &str) -> sqlx::Result<Vec<MembershipRow>> {
        sqlx::query_as(
            "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn membership(
        &self,
        user_id: &str,
        room_id: &str,
    ) -> sqlx::Result<Option<MembershipRow>> {
        sqlx::query_as(
            "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships \
             WHERE user_id = $1 AND room_id = $2",
        )
        .bind(user_id)
        .bind(room_id)
        .fetch_all(&self.pool)
        .await.map(super::first)
    }

    pub async fn room_members(&self, room_id: &str) -> sqlx::Result<Vec<MembershipRow>> {
        sqlx::query_as(
            "SELECT room_id, user_id, membership, event_id, stream_ordering, forgotten FROM memberships WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn forget_room(&self, user_id: &str, room_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE memberships SET forgotten = 1 WHERE user_id = $1 AND room_id = $2")
            .bind(user_id)
            .bind(room_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    // ---- aliases ----

    /// Returns false when the alias already exists.
    pub async fn insert_alias(
        tx: &mut Tx,
        alias: &str,
        room_id: &str,
        creator: &str,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(alias)
            .bind(room_id)
            .bind(creator)
            .execute(&mut **tx)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn alias(&self, alias: &str) -> sqlx::Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn delete_alias(&self, alias: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Moves a room's local aliases and its room directory listing to its replacement (room
    /// upgrade), in one transaction.
    pub async fn transfer_listing(&self, old_room: &str, new_room: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        let public = sqlx::query("SELECT is_public FROM rooms WHERE room_id = $1")
            .bind(old_room)
            .fetch_all(&mut *tx.tx)
            .await
            .map(super::first)?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0);
        sqlx::query("UPDATE room_aliases SET room_id = $1 WHERE room_id = $2")
            .bind(new_room)
            .bind(old_room)
            .execute(&mut *tx.tx)
            .await?;
        if public != 0 {
            sqlx::query("UPDATE rooms SET is_public = CASE WHEN room_id = $1 THEN 1 ELSE 0 END WHERE room_id IN ($1, $2)")
                .bind(new_room)
                .bind(old_room)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
    }

    pub async fn room_aliases(&self, room_id: &str) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| r.try_get(0)).collect()
    }
}

impl Db {
    /// (room, membership, count) for joined and invited members of the rooms.
    pub async fn member_counts(
        &self,
        rooms: &[String],
    ) -> sqlx::Result<Vec<(String, String, i64)>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT room_id, membership, COUNT(*) FROM memberships WHERE room_id IN ({}) \
             AND membership IN ('join', 'invite') GROUP BY room_id, membership",
            super::placeholders(1, rooms.len())
        );
        let mut q = sqlx::query(&sql);
        for r in rooms {
            q = q.bind(r);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Joined and invited members of small rooms (for room summaries' heroes).
    pub async fn members_of(&self, rooms: &[String]) -> sqlx::Result<Vec<(String, String)>> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT room_id, user_id FROM memberships WHERE room_id IN ({}) AND membership IN ('join', 'invite') \
             ORDER BY room_id, user_id",
            super::placeholders(1, rooms.len())
        );
        let mut q = sqlx::query(&sql);
        for r in rooms {
            q = q.bind(r);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

impl Db {
    /// (user, membership) of the members of these rooms whose membership changed in (since, until].
    pub async fn membership_changes(
        &self,
        rooms: &[String],
        since: i64,
        until: i64,
    ) -> sqlx::Result<Vec<(String, String)>> {
        self.select_in(
            "SELECT user_id, membership FROM memberships WHERE room_id IN ({in}) \
             AND stream_ordering > $1 AND stream_ordering <= $2",
            &[super::Bind::Int(since), super::Bind::Int(until)],
            rooms,
        )
        .await
    }

    /// Those of `candidates` who still share a room (joined or invited) with the user.
    pub async fn still_sharing(
        &self,
        user: &str,
        candidates: &[String],
    ) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = self
            .select_in(
                "SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
                 WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.membership IN ('join', 'invite') \
                 AND m2.user_id IN ({in})",
                &[super::Bind::Text(user)],
                candidates,
            )
            .await?;
        // Chunks may repeat a user only if a candidate repeats; DISTINCT holds per chunk.
        Ok(rows.into_iter().map(|(u,)| u).collect())
    }

    /// Users joined to at least one room the user is joined to (the user included).
    pub async fn users_sharing_rooms(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
             WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.membership = 'join'",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| r.try_get(0)).collect()
    }

    /// Whether `user` shares a joined room with a user of `server` (an EXISTS, not the list).
    pub async fn shares_room_with_server(&self, user_id: &str, server: &str) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
             WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.membership = 'join' \
             AND m2.user_id LIKE $2 ESCAPE '\\' LIMIT 1",
        )
        .bind(user_id)
        .bind(users_of(server))
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    /// Whether `user` and a user of `server` are each joined or invited in one same room.
    pub async fn shares_room_with_server_or_invited(
        &self,
        user_id: &str,
        server: &str,
    ) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
             WHERE m1.user_id = $1 AND m1.membership IN ('join', 'invite') \
             AND m2.membership IN ('join', 'invite') \
             AND m2.user_id LIKE $2 ESCAPE '\\' LIMIT 1",
        )
        .bind(user_id)
        .bind(users_of(server))
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    /// Whether two users are each joined or invited in one same room.
    pub async fn share_a_room_or_invited(&self, a: &str, b: &str) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
             WHERE m1.user_id = $1 AND m1.membership IN ('join', 'invite') \
             AND m2.user_id = $2 AND m2.membership IN ('join', 'invite') LIMIT 1",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }
}

/// The `LIKE` pattern (escape `\`) of the user ids of `server`.
pub(super) fn users_of(server: &str) -> String {
    let escaped = server
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%:{escaped}")
}
