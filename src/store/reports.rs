//! Content reports: events and rooms reported by users, for the server's moderators.

use sqlx::Row;

use super::Db;

/// A stored report. `event_id` is None when the room itself was reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    pub room_id: String,
    pub event_id: Option<String>,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub received_ts: i64,
}

/// Which reports to list (every field narrows the list).
#[derive(Debug, Clone, Default)]
pub struct ReportFilter<'a> {
    pub room_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// Some(true): event reports only; Some(false): room reports only.
    pub events: Option<bool>,
    /// Reports of events this user sent.
    pub sender: Option<&'a str>,
}

impl ReportFilter<'_> {
    /// The WHERE clause (placeholders from $1) and its values, in order.
    fn clause(&self) -> (String, Vec<&str>) {
        let mut conds = vec![];
        let mut binds = vec![];
        if let Some(r) = self.room_id {
            binds.push(r);
            conds.push(format!("room_id = ${}", binds.len()));
        }
        if let Some(u) = self.user_id {
            binds.push(u);
            conds.push(format!("user_id = ${}", binds.len()));
        }
        if let Some(u) = self.sender {
            binds.push(u);
            conds.push(format!(
                "event_id IN (SELECT event_id FROM events WHERE sender = ${})",
                binds.len()
            ));
        }
        match self.events {
            Some(true) => conds.push("event_id IS NOT NULL".into()),
            Some(false) => conds.push("event_id IS NULL".into()),
            None => {}
        }
        let sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        (sql, binds)
    }
}

const REPORT_COLS: &str = "id, room_id, event_id, user_id, reason, score, received_ts";

impl Db {
    /// Stores a report; returns its id.
    pub async fn insert_report(
        &self,
        room_id: &str,
        event_id: Option<&str>,
        user_id: &str,
        reason: Option<&str>,
        score: Option<i64>,
        now: i64,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO reports (room_id, event_id, user_id, reason, score, received_ts) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(room_id)
        .bind(event_id)
        .bind(user_id)
        .bind(reason)
        .bind(score)
        .bind(now)
        .fetch_all(&mut *tx.tx)
        .await
        .and_then(super::one)?;
        tx.commit().await?;
        row.try_get(0)
    }

    /// A page of reports, newest first (or oldest first), skipping `offset` of them.
    pub async fn list_reports(
        &self,
        filter: &ReportFilter<'_>,
        offset: i64,
        limit: i64,
        newest_first: bool,
    ) -> sqlx::Result<Vec<ReportRow>> {
        let (clause, binds) = filter.clause();
        let order = if newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {REPORT_COLS} FROM reports{clause} ORDER BY id {order} LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut q = sqlx::query_as(&sql);
        for b in binds {
            q = q.bind(b);
        }
        q.bind(limit).bind(offset).fetch_all(&self.pool).await
    }

    /// How many reports the filter matches (for paginated listings).
    pub async fn count_reports(&self, filter: &ReportFilter<'_>) -> sqlx::Result<i64> {
        let (clause, binds) = filter.clause();
        let sql = format!("SELECT COUNT(*) FROM reports{clause}");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        q.fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }

    pub async fn get_report(&self, id: i64) -> sqlx::Result<Option<ReportRow>> {
        sqlx::query_as(&format!("SELECT {REPORT_COLS} FROM reports WHERE id = $1"))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)
    }
}
