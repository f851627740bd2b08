//! What the admin API reads and changes about accounts: the paginated user list, account flags
//! (locked, suspended, shadow-banned, erased, user type), rate-limit overrides, user reports.

use sqlx::Row;

use super::{directory::like_escape, Db};

/// A user as the admin API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminUserRow {
    pub user_id: String,
    pub is_admin: i64,
    pub deactivated: i64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
    pub locked: i64,
    pub suspended: i64,
    pub shadow_banned: i64,
    pub erased: i64,
    pub user_type: Option<String>,
    pub last_seen_ts: Option<i64>,
}

const ADMIN_USER_COLS: &str = "u.user_id, u.is_admin, u.deactivated, u.displayname, u.avatar_url, \
     u.created_ts, u.locked, u.suspended, u.shadow_banned, u.erased, u.user_type, \
     (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts";

/// Which users to list and in which order (`GET /_synapse/admin/v2/users`).
#[derive(Debug, Clone, Default)]
pub struct UserListQuery {
    /// Substring of the user id.
    pub user_id: Option<String>,
    /// Substring of the user id or of the display name.
    pub name: Option<String>,
    pub admins: Option<bool>,
    /// Some(v): only users whose flag is v.
    pub deactivated: Option<bool>,
    pub locked: Option<bool>,
    /// Only these user types (`None` in the list: users without a type).
    pub user_types: Vec<Option<String>>,
    /// The ORDER BY expression (a fixed column, never the caller's text).
    pub order_by: &'static str,
    pub descending: bool,
    pub from: i64,
    pub limit: i64,
}

/// A flag of the users table that the admin API sets.
#[derive(Debug, Clone, Copy)]
pub enum UserFlag {
    Locked,
    Suspended,
    ShadowBanned,
    Erased,
}

impl UserFlag {
    fn column(self) -> &'static str {
        match self {
            UserFlag::Locked => "locked",
            UserFlag::Suspended => "suspended",
            UserFlag::ShadowBanned => "shadow_banned",
            UserFlag::Erased => "erased",
        }
    }
}

/// A report of a user (`POST /users/{userId}/report`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserReportRow {
    pub id: i64,
    pub target_user_id: String,
    pub user_id: String,
    pub reason: String,
    pub received_ts: i64,
}

impl UserListQuery {
    /// The WHERE clause (placeholders from $1) and its text values, in order.
    fn clause(&self) -> (String, Vec<String>) {
        let mut conds: Vec<String> = vec![];
        let mut binds: Vec<String> = vec![];
        if let Some(u) = &self.user_id {
            binds.push(format!("%{}%", like_escape(&u.to_lowercase())));
            conds.push(format!(
                "LOWER(u.user_id) LIKE ${} ESCAPE '\\'",
                binds.len()
            ));
        }
        if let Some(n) = &self.name {
            binds.push(format!("%{}%", like_escape(&n.to_lowercase())));
            let i = binds.len();
            conds.push(format!(
                "(LOWER(u.user_id) LIKE ${i} ESCAPE '\\' OR LOWER(u.displayname) LIKE ${i} ESCAPE '\\')"
            ));
        }
        let flag = |col: &str, v: bool| format!("u.{col} = {}", i64::from(v));
        if let Some(a) = self.admins {
            conds.push(flag("is_admin", a));
        }
        if let Some(d) = self.deactivated {
            conds.push(flag("deactivated", d));
        }
        if let Some(l) = self.locked {
            conds.push(flag("locked", l));
        }
        if !self.user_types.is_empty() {
            let mut alts = vec![];
            for t in &self.user_types {
                match t {
                    Some(t) => {
                        binds.push(t.clone());
                        alts.push(format!("u.user_type = ${}", binds.len()));
                    }
                    None => alts.push("u.user_type IS NULL".into()),
                }
            }
            conds.push(format!("({})", alts.join(" OR ")));
        }
        let sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        (sql, binds)
    }
}

impl Db {
    /// A page of local users and the number of users the filter matches.
    pub async fn admin_list_users(
        &self,
        q: &UserListQuery,
    ) -> sqlx::Result<(Vec<AdminUserRow>, i64)> {
        let (clause, binds) = q.clause();
        let dir = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {ADMIN_USER_COLS} FROM users u{clause} ORDER BY {} {dir}, u.user_id {dir} \
             LIMIT ${} OFFSET ${}",
            q.order_by,
            binds.len() + 1,
            binds.len() + 2
        );
        let mut query = sqlx::query_as(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.from)
            .fetch_all(&self.pool)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM users u{clause}");
        let mut count = sqlx::query(&count_sql);
        for b in &binds {
            count = count.bind(b);
        }
        let total: i64 = count
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        Ok((rows, total))
    }

    pub async fn admin_get_user(&self, user_id: &str) -> sqlx::Result<Option<AdminUserRow>> {
        sqlx::query_as(&format!(
            "SELECT {ADMIN_USER_COLS} FROM users u WHERE u.user_id = $1"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    pub async fn set_user_flag(
        &self,
        user_id: &str,
        flag: UserFlag,
        value: bool,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "UPDATE users SET {} = $1 WHERE user_id = $2",
            flag.column()
        ))
        .bind(i64::from(value))
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Every account with the flag set.
    pub async fn flagged_users(&self, flag: UserFlag) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT user_id FROM users WHERE {} = 1",
            flag.column()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// Every rate-limit override: (user, messages per second, burst count).
    pub async fn ratelimit_overrides(&self) -> sqlx::Result<Vec<(String, i64, i64)>> {
        sqlx::query_as("SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides")
            .fetch_all(&self.pool)
            .await
    }

    /// How many invites the user sent since `from_ts`.
    pub async fn sent_invite_count(&self, user_id: &str, from_ts: i64) -> sqlx::Result<i64> {
        let membership = self.state_field("e.json", "membership");
        let sql = format!(
            "SELECT COUNT(*) FROM events e WHERE e.sender = $1 AND e.type = 'm.room.member' \
             AND e.state_key <> $1 AND e.origin_server_ts >= $2 AND {membership} = 'invite' \
             AND e.rejected = 0"
        );
        sqlx::query(&sql)
            .bind(user_id)
            .bind(from_ts)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }

    /// How many distinct rooms the user ever joined.
    pub async fn cumulative_joined_rooms(&self, user_id: &str) -> sqlx::Result<i64> {
        let membership = self.state_field("e.json", "membership");
        let sql = format!(
            "SELECT COUNT(DISTINCT e.room_id) FROM events e WHERE e.type = 'm.room.member' \
             AND e.state_key = $1 AND {membership} = 'join' AND e.rejected = 0"
        );
        sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }

    pub async fn set_user_type(&self, user_id: &str, user_type: Option<&str>) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET user_type = $1 WHERE user_id = $2")
            .bind(user_type)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Reactivates a deactivated account (with its new password, if any).
    pub async fn reactivate_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE users SET deactivated = 0, erased = 0, \
             password_hash = COALESCE($1, password_hash) WHERE user_id = $2",
        )
        .bind(password_hash)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The user's rate-limit override: (messages per second, burst count).
    pub async fn ratelimit_override(&self, user_id: &str) -> sqlx::Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Sets (`Some`) or removes (`None`) the user's rate-limit override.
    pub async fn set_ratelimit_override(
        &self,
        user_id: &str,
        value: Option<(i64, i64)>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        match value {
            Some((per_second, burst)) => {
                sqlx::query(
                    "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) \
                     VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET \
                     messages_per_second = excluded.messages_per_second, \
                     burst_count = excluded.burst_count",
                )
                .bind(user_id)
                .bind(per_second)
                .bind(burst)
                .execute(&mut *tx.tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM ratelimit_overrides WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// Stores a report of a user; returns its id.
    pub async fn insert_user_report(
        &self,
        target: &str,
        reporter: &str,
        reason: &str,
        ts: i64,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO user_reports (target_user_id, user_id, reason, received_ts) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(target)
        .bind(reporter)
        .bind(reason)
        .bind(ts)
        .fetch_all(&mut *tx.tx)
        .await
        .and_then(super::one)?;
        tx.commit().await?;
        row.try_get(0)
    }

    /// A page of user reports (optionally of one reported user, or by one reporter) and
    /// the number the filter matches.
    pub async fn list_user_reports(
        &self,
        target: Option<&str>,
        reporter: Option<&str>,
        offset: i64,
        limit: i64,
        newest_first: bool,
    ) -> sqlx::Result<(Vec<UserReportRow>, i64)> {
        let clause = " WHERE ($1 IS NULL OR target_user_id = $1) AND ($2 IS NULL OR user_id = $2)";
        let order = if newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query_as(&format!(
            "SELECT id, target_user_id, user_id, reason, received_ts FROM user_reports{clause} \
             ORDER BY id {order} LIMIT $3 OFFSET $4"
        ))
        .bind(target)
        .bind(reporter)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM user_reports{clause}"))
            .bind(target)
            .bind(reporter)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        Ok((rows, total))
    }

    pub async fn get_user_report(&self, id: i64) -> sqlx::Result<Option<UserReportRow>> {
        sqlx::query_as(
            "SELECT id, target_user_id, user_id, reason, received_ts FROM user_reports WHERE id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// Deletes a report of a user or of content (`user_reports` or `reports`); false when
    /// there was none with that id.
    pub async fn delete_report_row(&self, table: ReportTable, id: i64) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table.name()))
            .bind(id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}

/// Which report table a deletion is for.
#[derive(Debug, Clone, Copy)]
pub enum ReportTable {
    Content,
    Users,
}

impl ReportTable {
    fn name(self) -> &'static str {
        match self {
            ReportTable::Content => "reports",
            ReportTable::Users => "user_reports",
        }
    }
}

impl Db {
    /// Records a shared-secret registration nonce; drops the expired ones (created at or
    /// before `expired_before`) and all but the newest `keep`.
    pub async fn put_registration_nonce(
        &self,
        nonce: &str,
        now: i64,
        expired_before: i64,
        keep: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM registration_nonces WHERE created_ts <= $1")
            .bind(expired_before)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "DELETE FROM registration_nonces WHERE nonce IN (SELECT nonce FROM registration_nonces \
             ORDER BY created_ts DESC LIMIT 1000000 OFFSET $1)",
        )
        .bind(keep)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)")
            .bind(nonce)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Uses a nonce up: true when it existed and was created after `expired_before`.
    pub async fn take_registration_nonce(
        &self,
        nonce: &str,
        expired_before: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let rows =
            sqlx::query("DELETE FROM registration_nonces WHERE nonce = $1 RETURNING created_ts")
                .bind(nonce)
                .fetch_all(&mut *tx.tx)
                .await?;
        tx.commit().await?;
        Ok(rows
            .first()
            .and_then(|r| sqlx::Row::try_get::<i64, _>(r, 0).ok())
            .is_some_and(|t| t > expired_before))
    }
}
