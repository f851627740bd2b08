//! Server-side key backup (`/room_keys`): versions and the encrypted session keys in them.

use sqlx::Row;

use super::{push_rows_from, Db, Tx};

#[derive(Debug, Clone)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct BackupKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

impl Db {
    /// Creates the next version of the user's backup.
    pub async fn create_backup_version(
        &self,
        user: &str,
        algorithm: &str,
        auth_data: &str,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin_write().await?;
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = $1",
        )
        .bind(user)
        .fetch_all(&mut *tx.tx)
        .await
        .and_then(super::one)?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO backup_versions (user_id, version, algorithm, auth_data, etag, deleted) \
             VALUES ($1, $2, $3, $4, 0, 0)",
        )
        .bind(user)
        .bind(next)
        .bind(algorithm)
        .bind(auth_data)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// A live version (the newest when `version` is None), with its key count.
    pub async fn backup_version(
        &self,
        user: &str,
        version: Option<i64>,
    ) -> sqlx::Result<Option<BackupVersion>> {
        let sql = "SELECT v.version, v.algorithm, v.auth_data, v.etag, \
             (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version) \
             FROM backup_versions v WHERE v.user_id = $1 AND v.deleted = 0";
        let rows = match version {
            Some(v) => {
                sqlx::query(&format!("{sql} AND v.version = $2"))
                    .bind(user)
                    .bind(v)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{sql} ORDER BY v.version DESC LIMIT 1"))
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        super::first(rows)
            .map(|r| {
                Ok(BackupVersion {
                    version: r.try_get(0)?,
                    algorithm: r.try_get(1)?,
                    auth_data: r.try_get(2)?,
                    etag: r.try_get(3)?,
                    count: r.try_get(4)?,
                })
            })
            .transpose()
    }

    /// Replaces the auth data of a live version; false if there is no such version.
    pub async fn update_backup_version(
        &self,
        user: &str,
        version: i64,
        auth_data: &str,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query(
            "UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user)
        .bind(version)
        .bind(auth_data)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes a version and its keys; false if there is no such live version.
    pub async fn delete_backup_version(&self, user: &str, version: i64) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query(
            "UPDATE backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user)
        .bind(version)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user)
            .bind(version)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    /// The keys of a version, optionally of one room or one session.
    pub async fn backup_keys(
        &self,
        user: &str,
        version: i64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> sqlx::Result<Vec<BackupKey>> {
        Self::backup_keys_in(&self.pool, user, version, room, session).await
    }

    async fn backup_keys_in<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
        ex: E,
        user: &str,
        version: i64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> sqlx::Result<Vec<BackupKey>> {
        let mut sql = String::from(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
             FROM backup_keys WHERE user_id = $1 AND version = $2",
        );
        // A session is only ever asked for within its room.
        let session = room.and(session);
        if room.is_some() {
            sql.push_str(" AND room_id = $3");
        }
        if session.is_some() {
            sql.push_str(" AND session_id = $4");
        }
        let mut q = sqlx::query(&sql).bind(user).bind(version);
        if let Some(r) = room {
            q = q.bind(r);
        }
        if let Some(s) = session {
            q = q.bind(s);
        }
        q.fetch_all(ex)
            .await?
            .into_iter()
            .map(|r| {
                Ok(BackupKey {
                    room_id: r.try_get(0)?,
                    session_id: r.try_get(1)?,
                    first_message_index: r.try_get(2)?,
                    forwarded_count: r.try_get(3)?,
                    is_verified: r.try_get::<i64, _>(4)? != 0,
                    session_data: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Stores the keys `keep` prefers over what is stored, in one transaction; bumps the etag if
    /// anything changed. Returns (count, etag), or None if the version is not live.
    pub async fn put_backup_keys(
        &self,
        user: &str,
        version: i64,
        keys: Vec<BackupKey>,
        keep: impl Fn(&BackupKey, &BackupKey) -> bool,
    ) -> sqlx::Result<Option<(i64, i64)>> {
        let mut tx = self.begin_write().await?;
        let live = sqlx::query(
            "SELECT 1 FROM backup_versions WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user)
        .bind(version)
        .fetch_all(&mut *tx.tx)
        .await?;
        if live.is_empty() {
            return Ok(None);
        }
        let mut existing = std::collections::HashMap::new();
        let mut rooms: Vec<&str> = keys.iter().map(|k| k.room_id.as_str()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        for room in rooms {
            for k in Self::backup_keys_in(&mut *tx.tx, user, version, Some(room), None).await? {
                existing.insert((k.room_id.clone(), k.session_id.clone()), k);
            }
        }
        let mut chosen: std::collections::HashMap<(String, String), BackupKey> =
            std::collections::HashMap::new();
        for k in keys {
            let id = (k.room_id.clone(), k.session_id.clone());
            let better = match chosen.get(&id).or_else(|| existing.get(&id)) {
                Some(old) => keep(&k, old),
                None => true,
            };
            if better {
                chosen.insert(id, k);
            }
        }
        let changed: Vec<BackupKey> = chosen.into_values().collect();
        for chunk in changed.chunks(300) {
            let mut sql = String::from(
                "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, \
                 forwarded_count, is_verified, session_data) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 8);
            sql.push_str(
                " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
                 first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
                 is_verified = excluded.is_verified, session_data = excluded.session_data",
            );
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q
                    .bind(user)
                    .bind(version)
                    .bind(&k.room_id)
                    .bind(&k.session_id)
                    .bind(k.first_message_index)
                    .bind(k.forwarded_count)
                    .bind(k.is_verified as i64)
                    .bind(&k.session_data);
            }
            q.execute(&mut *tx.tx).await?;
        }
        if !changed.is_empty() {
            Self::bump_etag(&mut tx.tx, user, version).await?;
        }
        let res = Self::count_and_etag(&mut tx.tx, user, version).await?;
        tx.commit().await?;
        Ok(Some(res))
    }

    /// Deletes keys of a version (all, one room's, or one session). Returns (count, etag), or
    /// None if the version is not live.
    pub async fn delete_backup_keys(
        &self,
        user: &str,
        version: i64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> sqlx::Result<Option<(i64, i64)>> {
        let mut tx = self.begin_write().await?;
        let live = sqlx::query(
            "SELECT 1 FROM backup_versions WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user)
        .bind(version)
        .fetch_all(&mut *tx.tx)
        .await?;
        if live.is_empty() {
            return Ok(None);
        }
        let res = match (room, session) {
            (Some(r), Some(s)) => {
                sqlx::query(
                    "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
                )
                .bind(user)
                .bind(version)
                .bind(r)
                .bind(s)
                .execute(&mut *tx.tx)
                .await?
            }
            (Some(r), None) => {
                sqlx::query(
                    "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3",
                )
                .bind(user)
                .bind(version)
                .bind(r)
                .execute(&mut *tx.tx)
                .await?
            }
            _ => {
                sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
                    .bind(user)
                    .bind(version)
                    .execute(&mut *tx.tx)
                    .await?
            }
        };
        if res.rows_affected() > 0 {
            Self::bump_etag(&mut tx.tx, user, version).await?;
        }
        let out = Self::count_and_etag(&mut tx.tx, user, version).await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    async fn bump_etag(tx: &mut Tx, user: &str, version: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
        )
        .bind(user)
        .bind(version)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn count_and_etag(tx: &mut Tx, user: &str, version: i64) -> sqlx::Result<(i64, i64)> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM backup_keys WHERE user_id = $1 AND version = $2), etag \
             FROM backup_versions WHERE user_id = $1 AND version = $2",
        )
        .bind(user)
        .bind(version)
        .fetch_all(&mut **tx)
        .await
        .and_then(super::one)?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }
}
