//! Background admin jobs (room deletion, …) and the room purge they run.

use super::{Db, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub target: String,
    /// The job's parameters, JSON.
    pub params: String,
    /// `scheduled`, `active`, `complete` or `failed` (Synapse's words).
    pub status: String,
    pub done: i64,
    pub total: i64,
    /// What the job reports when done, JSON.
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_ts: i64,
    pub updated_ts: i64,
}

const JOB_COLS: &str =
    "id, kind, target, params, status, done, total, result, error, created_ts, updated_ts";

/// Tables of a room keyed by its events: deleted with each chunk of the room's events.
const BY_EVENT: &[(&str, &str)] = &[
    ("event_edges", "event_id"),
    ("event_auth", "event_id"),
    ("event_relations", "event_id"),
    ("event_push_actions", "event_id"),
    ("federation_outbox", "event_id"),
    ("txn_ids", "event_id"),
];

/// Tables with a `room_id` column: emptied of the room once its events are gone.
const BY_ROOM: &[&str] = &[
    "forward_extremities",
    "current_state",
    "memberships",
    "room_aliases",
    "account_data",
    "receipts",
    "event_search",
    "hierarchy_pages",
    "remote_memberships",
    "room_backfill",
    "email_invites",
    "server_notice_rooms",
    "pending_redactions",
    "event_relations",
    "event_push_actions",
];

impl Db {
    /// Records a job, run by the node in `runner` (0 alone).
    pub async fn insert_job(&self, job: &JobRow, runner: i64) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO admin_jobs ({JOB_COLS}, runner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&job.id)
        .bind(&job.kind)
        .bind(&job.target)
        .bind(&job.params)
        .bind(&job.status)
        .bind(job.done)
        .bind(job.total)
        .bind(&job.result)
        .bind(&job.error)
        .bind(job.created_ts)
        .bind(job.updated_ts)
        .bind(runner)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Cluster: unfinished jobs whose node is gone (its slot's lock is free) become `runner`'s.
    pub async fn adopt_orphan_jobs(&self, runner: i64) -> sqlx::Result<Vec<JobRow>> {
        sqlx::query_as(&format!(
            "UPDATE admin_jobs SET runner = $1 WHERE status IN ('scheduled', 'active')              AND runner NOT IN ({}) RETURNING {JOB_COLS}",
            super::cluster::LIVE_SLOTS
        ))
        .bind(runner)
        .fetch_all(&self.pool)
        .await
    }

    /// Records a job's progress and status (and, when it ends, its result or error).
    pub async fn update_job(&self, job: &JobRow) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE admin_jobs SET status = $1, done = $2, total = $3, result = $4, error = $5, \
             updated_ts = $6 WHERE id = $7",
        )
        .bind(&job.status)
        .bind(job.done)
        .bind(job.total)
        .bind(&job.result)
        .bind(&job.error)
        .bind(crate::util::now_ms())
        .bind(&job.id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    pub async fn get_job(&self, id: &str) -> sqlx::Result<Option<JobRow>> {
        sqlx::query_as(&format!("SELECT {JOB_COLS} FROM admin_jobs WHERE id = $1"))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)
    }

    /// Jobs of a kind on a target, oldest first.
    pub async fn jobs_of(&self, kind: &str, target: &str) -> sqlx::Result<Vec<JobRow>> {
        sqlx::query_as(&format!(
            "SELECT {JOB_COLS} FROM admin_jobs WHERE kind = $1 AND target = $2 ORDER BY created_ts, id"
        ))
        .bind(kind)
        .bind(target)
        .fetch_all(&self.pool)
        .await
    }

    /// Jobs not finished (to resume at start), oldest first.
    pub async fn unfinished_jobs(&self) -> sqlx::Result<Vec<JobRow>> {
        sqlx::query_as(&format!(
            "SELECT {JOB_COLS} FROM admin_jobs WHERE status IN ('scheduled', 'active') \
             ORDER BY created_ts, id"
        ))
        .fetch_all(&self.pool)
        .await
    }

    /// Jobs, newest first, optionally of one kind or status (`GET /scheduled_tasks`).
    pub async fn list_jobs(
        &self,
        kind: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<JobRow>> {
        sqlx::query_as(&format!(
            "SELECT {JOB_COLS} FROM admin_jobs WHERE ($1 IS NULL OR kind = $1) \
             AND ($2 IS NULL OR status = $2) ORDER BY created_ts DESC, id DESC LIMIT $3"
        ))
        .bind(kind)
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// How many events of the room are stored.
    pub async fn count_room_events(&self, room_id: &str) -> sqlx::Result<i64> {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) FROM events WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)
    }

    /// Deletes the room's oldest `chunk` events with what hangs on them; returns how many
    /// events went (0: none left). Each chunk is its own transaction, so a large room does not
    /// hold the database's writer for long, and a purge cut short resumes where it stopped.
    pub async fn purge_room_events(&self, room_id: &str, chunk: i64) -> sqlx::Result<u64> {
        use sqlx::Row;
        let mut tx = self.begin_write().await?;
        let last: Option<i64> = sqlx::query(
            "SELECT MAX(stream_ordering) FROM (SELECT stream_ordering FROM events \
             WHERE room_id = $1 ORDER BY stream_ordering LIMIT $2) t",
        )
        .bind(room_id)
        .bind(chunk)
        .fetch_all(&mut *tx.tx)
        .await
        .and_then(super::one)?
        .try_get(0)?;
        let Some(last) = last else {
            return Ok(0);
        };
        let chosen = "SELECT event_id FROM events WHERE room_id = $1 AND stream_ordering <= $2";
        for (table, col) in BY_EVENT {
            sqlx::query(&format!("DELETE FROM {table} WHERE {col} IN ({chosen})"))
                .bind(room_id)
                .bind(last)
                .execute(&mut *tx.tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM events WHERE room_id = $1 AND stream_ordering <= $2")
            .bind(room_id)
            .bind(last)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Deletes what is left of a room once its events are gone: state, memberships, aliases,
    /// receipts, room account data, indexes, and the room itself.
    pub async fn purge_room_rest(&self, room_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        purge_state_groups(&mut tx.tx, room_id).await?;
        for table in BY_ROOM {
            sqlx::query(&format!("DELETE FROM {table} WHERE room_id = $1"))
                .bind(room_id)
                .execute(&mut *tx.tx)
                .await?;
        }
        sqlx::query("DELETE FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}

async fn purge_state_groups(tx: &mut Tx, room_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM state_group_entries WHERE group_id IN \
         (SELECT id FROM state_groups WHERE room_id = $1)",
    )
    .bind(room_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM state_groups WHERE room_id = $1")
        .bind(room_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
