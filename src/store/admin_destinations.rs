//! `destinations` and `destination_rooms`: the retry state of every server this one sends to,
//! as the federation sender writes it on state changes, and the rooms sent to each; read by the
//! federation admin API. Also the cross-signing replacement deadline that API sets.

use sqlx::Row;

use super::Db;

#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DestinationRow {
    pub destination: String,
    pub retry_last_ts: i64,
    pub retry_interval: i64,
    pub failure_ts: Option<i64>,
    pub last_successful_stream_ordering: Option<i64>,
}

/// How a destination listing is sorted (Synapse's `order_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationOrder {
    Destination,
    RetryLastTs,
    RetryInterval,
    FailureTs,
    LastSuccessfulStreamOrdering,
}

impl DestinationOrder {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "destination" => Self::Destination,
            "retry_last_ts" => Self::RetryLastTs,
            "retry_interval" => Self::RetryInterval,
            "failure_ts" => Self::FailureTs,
            "last_successful_stream_ordering" => Self::LastSuccessfulStreamOrdering,
            _ => return None,
        })
    }

    /// The sort key (NULL sorted as 0 so both databases agree).
    fn column(self) -> &'static str {
        match self {
            Self::Destination => "destination",
            Self::RetryLastTs => "retry_last_ts",
            Self::RetryInterval => "retry_interval",
            Self::FailureTs => "COALESCE(failure_ts, 0)",
            Self::LastSuccessfulStreamOrdering => "COALESCE(last_successful_stream_ordering, 0)",
        }
    }
}

/// One page of a destination listing.
#[derive(Debug, Clone)]
pub struct DestinationQuery<'a> {
    pub from: i64,
    pub limit: i64,
    pub order: DestinationOrder,
    pub backwards: bool,
    /// Substring of the server name.
    pub contains: Option<&'a str>,
}

const COLS: &str =
    "destination, retry_last_ts, retry_interval, failure_ts, last_successful_stream_ordering";

/// The `LIKE` pattern (escape `\`) of names containing `s`.
fn containing(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Db {
    /// Writes what the sender knows of a destination (the whole row) and the rooms it sent to
    /// it since the last write, in one transaction.
    pub async fn put_destination(
        &self,
        row: &DestinationRow,
        rooms: &[(String, i64)],
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO destinations ({COLS}) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (destination) DO UPDATE SET retry_last_ts = $2, retry_interval = $3, \
             failure_ts = $4, last_successful_stream_ordering = $5"
        ))
        .bind(&row.destination)
        .bind(row.retry_last_ts)
        .bind(row.retry_interval)
        .bind(row.failure_ts)
        .bind(row.last_successful_stream_ordering)
        .execute(&mut *tx.tx)
        .await?;
        for (room, so) in rooms {
            sqlx::query(
                "INSERT INTO destination_rooms (destination, room_id, stream_ordering) \
                 VALUES ($1, $2, $3) ON CONFLICT (destination, room_id) DO UPDATE \
                 SET stream_ordering = $3",
            )
            .bind(&row.destination)
            .bind(room)
            .bind(so)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// A destination's row, if this server ever sent to it.
    pub async fn destination(&self, dest: &str) -> sqlx::Result<Option<DestinationRow>> {
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM destinations WHERE destination = $1"
        ))
        .bind(dest)
        .fetch_optional(&self.pool)
        .await
    }

    /// The rooms already recorded for a destination (the sender's starting point).
    pub async fn destination_room_ids(&self, dest: &str) -> sqlx::Result<Vec<String>> {
        sqlx::query("SELECT room_id FROM destination_rooms WHERE destination = $1")
            .bind(dest)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    /// Ends a destination's backoff (the admin's `reset_connection`).
    pub async fn reset_destination(&self, dest: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE destinations SET retry_last_ts = 0, retry_interval = 0, failure_ts = NULL \
             WHERE destination = $1",
        )
        .bind(dest)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// One page of destinations and the number of those matching.
    pub async fn list_destinations(
        &self,
        q: &DestinationQuery<'_>,
    ) -> sqlx::Result<(Vec<DestinationRow>, i64)> {
        let filter = if q.contains.is_some() {
            "WHERE destination LIKE $1 ESCAPE '\\'"
        } else {
            ""
        };
        let dir = if q.backwards { "DESC" } else { "ASC" };
        let n = if q.contains.is_some() { 2 } else { 1 };
        let sql = format!(
            "SELECT {COLS} FROM destinations {filter} ORDER BY {} {dir}, destination {dir} \
             LIMIT ${} OFFSET ${}",
            q.order.column(),
            n,
            n + 1
        );
        let count_sql = format!("SELECT COUNT(*) FROM destinations {filter}");
        let pattern = q.contains.map(containing);
        let mut rows = sqlx::query_as(&sql);
        let mut count = sqlx::query_scalar(&count_sql);
        if let Some(p) = &pattern {
            rows = rows.bind(p.clone());
            count = count.bind(p.clone());
        }
        let rows = rows
            .bind(q.limit)
            .bind(q.from)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = count.fetch_one(&self.pool).await?;
        Ok((rows, total))
    }

    /// One page of the rooms sent to a destination (room id, stream ordering of the last event
    /// it accepted there), by room id, and their number.
    pub async fn destination_rooms(
        &self,
        dest: &str,
        from: i64,
        limit: i64,
        backwards: bool,
    ) -> sqlx::Result<(Vec<(String, i64)>, i64)> {
        let dir = if backwards { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT room_id, stream_ordering FROM destination_rooms WHERE destination = $1 \
             ORDER BY room_id {dir} LIMIT $2 OFFSET $3"
        ))
        .bind(dest)
        .bind(limit)
        .bind(from)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<sqlx::Result<Vec<_>>>()?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM destination_rooms WHERE destination = $1")
                .bind(dest)
                .fetch_one(&self.pool)
                .await?;
        Ok((rows, total))
    }

    /// Lets a user replace its cross-signing keys without UIA until `before_ms`; false when the
    /// user has no master key.
    pub async fn allow_cross_signing_replacement(
        &self,
        user: &str,
        before_ms: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cross_signing_keys SET updatable_without_uia_before_ms = $2 \
             WHERE user_id = $1 AND key_type = 'master'",
        )
        .bind(user)
        .bind(before_ms)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done > 0)
    }

    /// Until when the user may replace its cross-signing keys without UIA (None: never set).
    pub async fn cross_signing_replacement_deadline(
        &self,
        user: &str,
    ) -> sqlx::Result<Option<i64>> {
        let v: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT updatable_without_uia_before_ms FROM cross_signing_keys \
             WHERE user_id = $1 AND key_type = 'master'",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.flatten())
    }
}
