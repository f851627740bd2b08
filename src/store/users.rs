//! Users, devices, access/refresh tokens, UIA sessions, registration tokens.

use sqlx::Row;

use super::{Db, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: i64,
    pub deactivated: i64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// Locked by an admin: every request is refused (`M_USER_LOCKED`).
    pub locked: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub refresh_hash: Option<String>,
    pub pending_rotation: i64,
}

const USER_COLS: &str =
    "user_id, password_hash, is_admin, deactivated, displayname, avatar_url, locked";

impl Db {
    pub async fn get_user(&self, user_id: &str) -> sqlx::Result<Option<UserRow>> {
        sqlx::query_as(&format!("SELECT {USER_COLS} FROM users WHERE user_id = $1"))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)
    }

    pub async fn user_exists(&self, localpart: &str) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM users WHERE localpart = $1")
            .bind(localpart)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        Ok(row.is_some())
    }

    /// Inserts a user; returns false when the id is taken.
    pub async fn insert_user(
        tx: &mut Tx,
        user_id: &str,
        localpart: &str,
        password_hash: Option<&str>,
        is_admin: bool,
        displayname: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO users (user_id, localpart, password_hash, is_admin, displayname, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(localpart)
        .bind(password_hash)
        .bind(is_admin as i64)
        .bind(displayname)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    pub async fn set_admin(&self, user_id: &str, admin: bool) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET is_admin = $1 WHERE user_id = $2")
            .bind(admin as i64)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    pub async fn set_profile_field(
        &self,
        user_id: &str,
        field: ProfileField,
        value: Option<&str>,
    ) -> sqlx::Result<()> {
        let col = match field {
            ProfileField::Displayname => "displayname",
            ProfileField::AvatarUrl => "avatar_url",
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!("UPDATE users SET {col} = $1 WHERE user_id = $2"))
            .bind(value)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// A user's extended profile fields (key, JSON text), by key.
    pub async fn custom_profile_fields(
        &self,
        user_id: &str,
    ) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT key, value FROM profile_fields WHERE user_id = $1 ORDER BY key")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    /// Sets (`Some`, JSON text) or deletes (`None`) an extended profile field.
    pub async fn set_custom_profile_field(
        &self,
        user_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        match value {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO profile_fields (user_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(user_id)
                .bind(key)
                .bind(v)
                .execute(&mut *tx.tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 AND key = $2")
                    .bind(user_id)
                    .bind(key)
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// Marks the user deactivated and removes every device, token and password.
    pub async fn deactivate_user(&self, user_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM profile_fields WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL WHERE user_id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        // Tokens only: devices (and their keys) are deleted through delete_devices.
        for table in ["access_tokens", "refresh_tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
    }

    // ---- devices and tokens ----

    /// Creates (or refreshes) a device and issues an access token (and a refresh token).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_device_with_token(
        tx: &mut Tx,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token_hash: &str,
        expires_ts: Option<i64>,
        refresh_hash: Option<&str>,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, created_ts) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = $4",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(display_name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // A device has one live access token: logging in again with the same device id replaces it.
        sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&mut **tx)
            .await?;
        Self::insert_tokens(
            tx,
            user_id,
            device_id,
            token_hash,
            expires_ts,
            refresh_hash,
            now,
            false,
        )
        .await
    }

    /// Creates a device without any token (a dehydrated device). Returns false if it exists.
    pub async fn insert_device(
        tx: &mut Tx,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        now: i64,
    ) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(display_name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_tokens(
        tx: &mut Tx,
        user_id: &str,
        device_id: &str,
        token_hash: &str,
        expires_ts: Option<i64>,
        refresh_hash: Option<&str>,
        now: i64,
        rotation: bool,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, created_ts, refresh_hash, pending_rotation) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(device_id)
        .bind(expires_ts)
        .bind(now)
        .bind(refresh_hash)
        .bind(rotation as i64)
        .execute(&mut **tx)
        .await?;
        if let Some(r) = refresh_hash {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)",
            )
            .bind(r)
            .bind(user_id)
            .bind(device_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub async fn get_token(&self, token_hash: &str) -> sqlx::Result<Option<TokenRow>> {
        sqlx::query_as(
            "SELECT user_id, device_id, expires_ts, refresh_hash, pending_rotation FROM access_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// The owner of a refresh token.
    pub async fn refresh_owner(tx: &mut Tx, hash: &str) -> sqlx::Result<Option<(String, String)>> {
        let row =
            sqlx::query("SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_all(&mut **tx)
                .await
                .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Revokes a device's tokens other than the refresh token `keep` and the access tokens
    /// issued with it: the predecessors of a rotation, once a successor is used.
    pub async fn revoke_predecessors(
        tx: &mut Tx,
        user: &str,
        device: &str,
        keep: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2 AND token_hash <> $3",
        )
        .bind(user)
        .bind(device)
        .bind(keep)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 AND (refresh_hash IS NULL OR refresh_hash <> $3)",
        )
        .bind(user)
        .bind(device)
        .bind(keep)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE access_tokens SET pending_rotation = 0 WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user)
        .bind(device)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Token hashes of the given devices (all the user's devices when `devices` is None).
    pub async fn token_hashes(
        &self,
        user_id: &str,
        devices: Option<&[String]>,
    ) -> sqlx::Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT token_hash, device_id FROM access_tokens WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                devices.is_none_or(|d| {
                    d.iter()
                        .any(|x| r.try_get::<String, _>(1).is_ok_and(|y| *x == y))
                })
            })
            .filter_map(|r| r.try_get(0).ok())
            .collect())
    }

    /// Deletes devices with their tokens and end-to-end encryption state, and records the
    /// device-list change at `change_stream`.
    pub async fn delete_devices(
        &self,
        user_id: &str,
        devices: &[String],
        change_stream: i64,
        fin: Option<&super::cluster::Finish<'_>>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for d in devices {
            for table in ["access_tokens", "refresh_tokens", "devices"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
                ))
                .bind(user_id)
                .bind(d)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        Self::delete_device_e2ee(&mut tx.tx, user_id, devices).await?;
        Self::delete_device_pushers(&mut tx.tx, user_id, devices).await?;
        Self::delete_device_sliding(&mut tx.tx, user_id, devices).await?;
        Self::add_device_list_changes(&mut tx.tx, change_stream, &[user_id.to_owned()]).await?;
        self.finish_positions(&mut tx.tx, fin).await?;
        tx.commit().await
    }

    /// Removes every access and refresh token of the user.
    pub async fn delete_all_tokens(&self, user_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for table in ["access_tokens", "refresh_tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
    }

    /// (user, device) of every device of these users.
    pub async fn devices_of(&self, users: &[String]) -> sqlx::Result<Vec<(String, String)>> {
        self.select_in(
            "SELECT user_id, device_id FROM devices WHERE user_id IN ({in})",
            &[],
            users,
        )
        .await
    }

    pub async fn list_devices(&self, user_id: &str) -> sqlx::Result<Vec<DeviceRow>> {
        sqlx::query_as(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 ORDER BY device_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn get_device(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> sqlx::Result<Option<DeviceRow>> {
        sqlx::query_as(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await.map(super::first)
    }

    pub async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        name: Option<&str>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query(
            "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3",
        )
        .bind(name)
        .bind(user_id)
        .bind(device_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub async fn touch_device(
        &self,
        user_id: &str,
        device_id: &str,
        ip: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4")
            .bind(now)
            .bind(ip)
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    // ---- user-interactive auth sessions ----

    pub async fn uia_get(&self, session: &str) -> sqlx::Result<Option<(Option<String>, String)>> {
        let row = sqlx::query("SELECT user_id, completed FROM uia_sessions WHERE session_id = $1")
            .bind(session)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn uia_put(
        &self,
        session: &str,
        user_id: Option<&str>,
        completed: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO uia_sessions (session_id, user_id, completed, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (session_id) DO UPDATE SET completed = $3",
        )
        .bind(session)
        .bind(user_id)
        .bind(completed)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        // Sessions live one hour; an expired registration gives back its token's pending use.
        let held: Vec<(Option<String>,)> = sqlx::query_as(
            "DELETE FROM uia_sessions WHERE created_ts < $1 RETURNING registration_token",
        )
        .bind(now - 3_600_000)
        .fetch_all(&mut *tx.tx)
        .await?;
        let held: Vec<String> = held.into_iter().filter_map(|(t,)| t).collect();
        Db::release_registration_tokens(&mut tx.tx, &held).await?;
        tx.commit().await
    }

    /// Deletes a UIA session; a registration session still holding a pending token use (it
    /// did not register) gives it back.
    pub async fn uia_delete(&self, session: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        let held: Vec<(Option<String>,)> = sqlx::query_as(
            "DELETE FROM uia_sessions WHERE session_id = $1 RETURNING registration_token",
        )
        .bind(session)
        .fetch_all(&mut *tx.tx)
        .await?;
        let held: Vec<String> = held.into_iter().filter_map(|(t,)| t).collect();
        Db::release_registration_tokens(&mut tx.tx, &held).await?;
        tx.commit().await
    }
}

#[derive(Debug, Clone, Copy)]
pub enum ProfileField {
    Displayname,
    AvatarUrl,
}
