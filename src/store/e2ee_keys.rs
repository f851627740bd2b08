//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys and
//! the signatures on them, the device-list change stream, dehydrated devices.

use sqlx::{any::AnyRow, Row};

use std::collections::HashSet;

use super::{placeholders, push_rows_from, Db, Dialect, Tx};

/// Rounds of claiming before giving up on one-time keys that concurrent claims keep taking.
const CLAIM_ROUNDS: usize = 64;

/// A key handed out by a claim: (user, device, algorithm, key id, key JSON).
pub type ClaimedKey = (String, String, String, String, String);

/// A claim target: (user, device, algorithm).
pub type Target = (String, String, String);

/// A stored signature: (target user, target key id, signer user, signer key id, signature).
pub type SignatureRow = (String, String, String, String, String);

/// A device's keys as stored: (user, device, key JSON, display name).
pub type DeviceKeysRow = (String, String, String, Option<String>);

impl Db {
    pub async fn get_device_keys(&self, user: &str, device: &str) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2")
                .bind(user)
                .bind(device)
                .fetch_all(&self.pool)
                .await
                .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub async fn put_device_keys(
        tx: &mut Tx,
        user: &str,
        device: &str,
        json: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = $3",
        )
        .bind(user)
        .bind(device)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The device keys of every device of these users (display names from `devices`).
    pub async fn device_keys_of(&self, users: &[String]) -> sqlx::Result<Vec<DeviceKeysRow>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM device_keys k \
             LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
             WHERE k.user_id IN ({})",
            placeholders(1, users.len())
        );
        let mut q = sqlx::query(&sql);
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Key ids among `key_ids` already uploaded for the device, with their JSON.
    pub async fn existing_one_time_keys(
        tx: &mut Tx,
        user: &str,
        device: &str,
        key_ids: &[(String, String)],
    ) -> sqlx::Result<Vec<(String, String, String)>> {
        let mut out = vec![];
        for chunk in key_ids.chunks(400) {
            let mut sql = String::from(
                "SELECT algorithm, key_id, key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 \
                 AND (algorithm, key_id) IN (VALUES ",
            );
            push_rows_from(&mut sql, 3, chunk.len(), 2);
            sql.push(')');
            let mut q = sqlx::query(&sql).bind(user).bind(device);
            for (alg, id) in chunk {
                q = q.bind(alg).bind(id);
            }
            for r in q.fetch_all(&mut **tx).await? {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// Inserts one-time keys (algorithm, key id, JSON); already present ones are kept.
    pub async fn insert_one_time_keys(
        tx: &mut Tx,
        user: &str,
        device: &str,
        keys: &[(String, String, String)],
    ) -> sqlx::Result<()> {
        for chunk in keys.chunks(400) {
            let mut sql = String::from(
                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 5);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for (alg, id, json) in chunk {
                q = q.bind(user).bind(device).bind(alg).bind(id).bind(json);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Sets the fallback key of an algorithm. The same key uploaded again keeps its `used` flag.
    pub async fn put_fallback_key(
        tx: &mut Tx,
        user: &str,
        device: &str,
        algorithm: &str,
        key_id: &str,
        json: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE \
             SET key_id = $4, key_json = $5, \
             used = CASE WHEN fallback_keys.key_id = $4 AND fallback_keys.key_json = $5 THEN fallback_keys.used ELSE 0 END",
        )
        .bind(user)
        .bind(device)
        .bind(algorithm)
        .bind(key_id)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// (algorithm, unclaimed one-time keys, 0) rows and (algorithm, 0, 1) for unused fallback keys.
    pub async fn key_counts(
        &self,
        user: &str,
        device: &str,
    ) -> sqlx::Result<Vec<(String, i64, i64)>> {
        sqlx::query(
            "SELECT algorithm, COUNT(*), 0 FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm \
             UNION ALL SELECT algorithm, 0, 1 FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0",
        )
        .bind(user)
        .bind(device)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
    }

    /// Hands out one key per (user, device, algorithm), in one transaction: a one-time key
    /// (deleted: never handed out twice), else the fallback key (marked used).
    pub async fn claim_keys(&self, targets: Vec<Target>) -> sqlx::Result<Vec<ClaimedKey>> {
        let mut claimed = vec![];
        let mut missing = targets;
        let mut exhausted = vec![];
        let mut tx = self.begin_write().await?;
        for _ in 0..CLAIM_ROUNDS {
            if missing.is_empty() {
                break;
            }
            let got = Self::claim_one_time_keys(&mut tx.tx, &missing).await?;
            let done: HashSet<(&str, &str, &str)> = got
                .iter()
                .map(|(u, d, a, _, _)| (u.as_str(), d.as_str(), a.as_str()))
                .collect();
            missing.retain(|(u, d, a)| !done.contains(&(u.as_str(), d.as_str(), a.as_str())));
            claimed.extend(got);
            if missing.is_empty() {
                break;
            }
            // A target missed because it has no one-time key left, or (PostgreSQL only: SQLite
            // serialises writers) because a concurrent claim took the key this statement picked:
            // go again for the latter.
            let holders: HashSet<Target> = match self.dialect {
                Dialect::Sqlite => HashSet::new(),
                Dialect::Postgres => Self::targets_with_one_time_keys(&mut tx.tx, &missing)
                    .await?
                    .into_iter()
                    .collect(),
            };
            let (again, none): (Vec<_>, Vec<_>) =
                missing.into_iter().partition(|t| holders.contains(t));
            exhausted.extend(none);
            missing = again;
        }
        exhausted.extend(missing);
        if !exhausted.is_empty() {
            claimed.extend(Self::claim_fallback_keys(&mut tx.tx, &exhausted).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Deletes and returns one one-time key per target. A target whose key a concurrent claim
    /// took meanwhile gets none from this call (PostgreSQL re-checks the row), so no key is
    /// ever handed out twice.
    async fn claim_one_time_keys(tx: &mut Tx, targets: &[Target]) -> sqlx::Result<Vec<ClaimedKey>> {
        over_targets(
            tx,
            "DELETE FROM one_time_keys WHERE (user_id, device_id, algorithm, key_id) IN (\
             SELECT user_id, device_id, algorithm, MIN(key_id) FROM one_time_keys \
             WHERE (user_id, device_id, algorithm) IN (VALUES ",
            ") GROUP BY user_id, device_id, algorithm) \
             RETURNING user_id, device_id, algorithm, key_id, key_json",
            targets,
        )
        .await?
        .iter()
        .map(claimed)
        .collect()
    }

    /// Those of the targets that still hold one-time keys.
    async fn targets_with_one_time_keys(
        tx: &mut Tx,
        targets: &[Target],
    ) -> sqlx::Result<Vec<Target>> {
        over_targets(
            tx,
            "SELECT DISTINCT user_id, device_id, algorithm FROM one_time_keys \
             WHERE (user_id, device_id, algorithm) IN (VALUES ",
            ")",
            targets,
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
    }

    /// Marks the fallback keys of these targets used and returns them.
    async fn claim_fallback_keys(tx: &mut Tx, targets: &[Target]) -> sqlx::Result<Vec<ClaimedKey>> {
        over_targets(
            tx,
            "UPDATE fallback_keys SET used = 1 WHERE (user_id, device_id, algorithm) IN (VALUES ",
            ") RETURNING user_id, device_id, algorithm, key_id, key_json",
            targets,
        )
        .await?
        .iter()
        .map(claimed)
        .collect()
    }

    /// (user, key type, key JSON) for these users.
    pub async fn cross_signing_keys_of(
        &self,
        users: &[String],
    ) -> sqlx::Result<Vec<(String, String, String)>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT user_id, key_type, key_json FROM cross_signing_keys WHERE user_id IN ({})",
            placeholders(1, users.len())
        );
        let mut q = sqlx::query(&sql);
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn put_cross_signing_key(
        tx: &mut Tx,
        user: &str,
        key_type: &str,
        public_key: &str,
        json: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO cross_signing_keys (user_id, key_type, public_key, key_json) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = $3, key_json = $4",
        )
        .bind(user)
        .bind(key_type)
        .bind(public_key)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Signatures whose target belongs to one of these users.
    pub async fn signatures_on(&self, users: &[String]) -> sqlx::Result<Vec<SignatureRow>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature \
             FROM key_signatures WHERE target_user_id IN ({})",
            placeholders(1, users.len())
        );
        let mut q = sqlx::query(&sql);
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    pub async fn put_signatures(tx: &mut Tx, rows: &[SignatureRow]) -> sqlx::Result<()> {
        for chunk in rows.chunks(400) {
            let mut sql = String::from(
                "INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 5);
            sql.push_str(
                " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
                 DO UPDATE SET signature = excluded.signature",
            );
            let mut q = sqlx::query(&sql);
            for (a, b, c, d, e) in chunk {
                q = q.bind(a).bind(b).bind(c).bind(d).bind(e);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Records that these users' devices or keys changed at `stream`.
    pub async fn add_device_list_changes(
        tx: &mut Tx,
        stream: i64,
        users: &[String],
    ) -> sqlx::Result<()> {
        for chunk in users.chunks(400) {
            let mut sql =
                String::from("INSERT INTO device_list_changes (stream_id, user_id) VALUES ");
            push_rows_from(&mut sql, 1, chunk.len(), 2);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(stream).bind(u);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// `signer`'s signatures of `targets`' keys: a change of the targets that only the signer
    /// sees (`device_list_changes_for`).
    pub async fn add_signature_changes(
        tx: &mut Tx,
        stream: i64,
        signer: &str,
        targets: &[String],
    ) -> sqlx::Result<()> {
        for chunk in targets.chunks(300) {
            let mut sql =
                String::from("INSERT INTO signature_changes (stream_id, signer, target) VALUES ");
            push_rows_from(&mut sql, 1, chunk.len(), 3);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q.bind(stream).bind(signer).bind(t);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub async fn max_device_list_stream(&self) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COALESCE(MAX(m), 0) FROM (\
               SELECT MAX(stream_id) AS m FROM device_list_changes \
               UNION ALL SELECT MAX(stream_id) AS m FROM signature_changes) heads",
        )
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?
        .try_get(0)
    }

    /// Users whose devices changed in (since, until] and who are the user or share a room with
    /// them (joined or invited), and the users whose keys the user signed in that window.
    pub async fn device_list_changes_for(
        &self,
        user: &str,
        since: i64,
        until: i64,
    ) -> sqlx::Result<Vec<String>> {
        sqlx::query(
            "SELECT DISTINCT c.user_id FROM device_list_changes c \
             WHERE c.stream_id > $2 AND c.stream_id <= $3 AND (c.user_id = $1 OR EXISTS (\
               SELECT 1 FROM memberships m1 JOIN memberships m2 ON m2.room_id = m1.room_id \
               WHERE m1.user_id = $1 AND m1.membership = 'join' AND m2.user_id = c.user_id \
               AND m2.membership IN ('join', 'invite'))) \
             UNION SELECT target FROM signature_changes \
             WHERE signer = $1 AND stream_id > $2 AND stream_id <= $3",
        )
        .bind(user)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| r.try_get(0))
        .collect()
    }

    /// Deletes everything end-to-end encryption holds for these devices.
    pub async fn delete_device_e2ee(
        tx: &mut Tx,
        user: &str,
        devices: &[String],
    ) -> sqlx::Result<()> {
        for d in devices {
            for table in ["device_keys", "one_time_keys", "fallback_keys", "to_device"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
                ))
                .bind(user)
                .bind(d)
                .execute(&mut **tx)
                .await?;
            }
            sqlx::query(
                "DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key_id = $2",
            )
            .bind(user)
            .bind(d)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2")
                .bind(user)
                .bind(d)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// (device id, device data) of the user's dehydrated device.
    pub async fn get_dehydrated_device(
        &self,
        user: &str,
    ) -> sqlx::Result<Option<(String, String)>> {
        let row =
            sqlx::query("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1")
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn put_dehydrated_device(
        tx: &mut Tx,
        user: &str,
        device: &str,
        data: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET device_id = $2, device_data = $3",
        )
        .bind(user)
        .bind(device)
        .bind(data)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Runs `head VALUES (…),(…) tail` over (user, device, algorithm) targets, 300 at a time.
async fn over_targets(
    tx: &mut Tx,
    head: &str,
    tail: &str,
    targets: &[Target],
) -> sqlx::Result<Vec<AnyRow>> {
    let mut out = vec![];
    for chunk in targets.chunks(300) {
        let mut sql = String::from(head);
        push_rows_from(&mut sql, 1, chunk.len(), 3);
        sql.push_str(tail);
        let mut q = sqlx::query(&sql);
        for (u, d, a) in chunk {
            q = q.bind(u).bind(d).bind(a);
        }
        out.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(out)
}

fn claimed(r: &AnyRow) -> sqlx::Result<ClaimedKey> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
    ))
}

/// What a remote server answered about some of its users: their device keys (user, device,
/// JSON) and cross-signing keys (user, key type, JSON).
#[derive(Debug, Default)]
pub struct RemoteKeys {
    pub devices: Vec<(String, String, String)>,
    pub cross_signing: Vec<(String, String, String)>,
}

impl Db {
    /// (user, when fetched) of these remote users whose device lists are cached.
    pub async fn remote_device_list_ages(
        &self,
        users: &[String],
    ) -> sqlx::Result<Vec<(String, i64)>> {
        self.select_in(
            "SELECT user_id, fetched_ts FROM remote_device_lists WHERE user_id IN ({in})",
            &[],
            users,
        )
        .await
    }

    /// The cached keys of these remote users.
    pub async fn remote_keys_of(&self, users: &[String]) -> sqlx::Result<RemoteKeys> {
        Ok(RemoteKeys {
            devices: self
                .select_in(
                    "SELECT user_id, device_id, key_json FROM remote_device_keys WHERE user_id IN ({in})",
                    &[],
                    users,
                )
                .await?,
            cross_signing: self
                .select_in(
                    "SELECT user_id, key_type, key_json FROM remote_cross_signing_keys WHERE user_id IN ({in})",
                    &[],
                    users,
                )
                .await?,
        })
    }

    /// Replaces the cached keys of these remote users by a complete answer of their server.
    pub async fn put_remote_keys(
        &self,
        users: &[String],
        keys: &RemoteKeys,
        now: i64,
    ) -> sqlx::Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        Self::delete_remote_keys(&mut tx.tx, users).await?;
        for chunk in keys.devices.chunks(300) {
            let mut sql = String::from(
                "INSERT INTO remote_device_keys (user_id, device_id, key_json) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 3);
            sql.push_str(
                " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
            );
            let mut q = sqlx::query(&sql);
            for (u, d, j) in chunk {
                q = q.bind(u).bind(d).bind(j);
            }
            q.execute(&mut *tx.tx).await?;
        }
        for chunk in keys.cross_signing.chunks(300) {
            let mut sql = String::from(
                "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 3);
            sql.push_str(
                " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
            );
            let mut q = sqlx::query(&sql);
            for (u, k, j) in chunk {
                q = q.bind(u).bind(k).bind(j);
            }
            q.execute(&mut *tx.tx).await?;
        }
        for chunk in users.chunks(400) {
            let mut sql =
                String::from("INSERT INTO remote_device_lists (user_id, fetched_ts) VALUES ");
            push_rows_from(&mut sql, 1, chunk.len(), 2);
            sql.push_str(" ON CONFLICT (user_id) DO UPDATE SET fetched_ts = excluded.fetched_ts");
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u).bind(now);
            }
            q.execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    /// Forgets the cached keys of these remote users (the next query asks their server).
    pub async fn forget_remote_keys(&self, users: &[String]) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        Self::delete_remote_keys(&mut tx.tx, users).await?;
        tx.commit().await
    }

    async fn delete_remote_keys(tx: &mut Tx, users: &[String]) -> sqlx::Result<()> {
        for chunk in users.chunks(400) {
            for table in [
                "remote_device_lists",
                "remote_device_keys",
                "remote_cross_signing_keys",
            ] {
                let sql = format!(
                    "DELETE FROM {table} WHERE user_id IN ({})",
                    placeholders(1, chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for u in chunk {
                    q = q.bind(u);
                }
                q.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// The highest device-list position of a user (0 when their devices never changed).
    pub async fn device_list_position(&self, user: &str) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COALESCE(MAX(stream_id), 0) FROM device_list_changes WHERE user_id = $1",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?
        .try_get(0)
    }

    /// A user's device-list position before `stream` (their previous change), if any.
    pub async fn device_list_position_before(
        &self,
        user: &str,
        stream: i64,
    ) -> sqlx::Result<Option<i64>> {
        let pos: i64 = sqlx::query(
            "SELECT COALESCE(MAX(stream_id), 0) FROM device_list_changes \
             WHERE user_id = $1 AND stream_id < $2",
        )
        .bind(user)
        .bind(stream)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?
        .try_get(0)?;
        Ok((pos > 0).then_some(pos))
    }
}
