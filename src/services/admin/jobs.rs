//! Background admin jobs: a row per job in `admin_jobs` (parameters, status, progress,
//! result), run in their own task so no request waits on them, resumed at start when a
//! previous process left them scheduled or running. Each job's steps are idempotent, so a
//! resumed job redoes at most the chunk it was cut in. Progress is logged at the start, every
//! 10 % and at the end.

use serde_json::{json, Value};

use super::AdminFace;
use crate::{store::admin_jobs::JobRow, util, Error, Result};

/// The kind of a room deletion (Synapse's scheduled-task name).
pub const SHUTDOWN_ROOM: &str = "shutdown_and_purge_room";
/// The kind of a deletion of local media.
pub const DELETE_MEDIA: &str = "delete_media";
/// The kind of a purge of cached remote media.
pub const PURGE_REMOTE_MEDIA: &str = "purge_remote_media_cache";
/// The kind of a purge of a room's history.
pub const PURGE_HISTORY: &str = "purge_history";
/// The kind of a redaction of a user's events (Synapse's scheduled-task name).
pub const REDACT_USER: &str = "redact_all_events";

/// A running job's bookkeeping: what it has done out of how much, written to its row.
pub struct Progress {
    pub row: JobRow,
    logged_tenth: i64,
}

impl Progress {
    /// Sets the amount of work (events to purge, members to remove).
    pub fn total(&mut self, total: i64) {
        self.row.total = total.max(0);
    }

    /// Records `n` more units done; saves and logs each 10 % step.
    pub async fn advance(&mut self, s: AdminFace<'_>, n: i64) -> Result<()> {
        self.row.done += n;
        let tenth = if self.row.total > 0 {
            (self.row.done * 10 / self.row.total).min(10)
        } else {
            10
        };
        if tenth > self.logged_tenth {
            self.logged_tenth = tenth;
            tracing::info!(
                job = %self.row.id, kind = %self.row.kind, target = %self.row.target,
                done = self.row.done, total = self.row.total, "admin job {}%", tenth * 10
            );
            s.db.update_job(&self.row).await?;
        }
        Ok(())
    }
}

impl AdminFace<'_> {
    /// Records a new job (`scheduled`) and starts it in its own task; returns its id.
    pub async fn start_job(self, kind: &str, target: &str, params: Value) -> Result<String> {
        let id = self.record_job(kind, target, params).await?;
        if let Some(row) = self.db.get_job(&id).await? {
            self.spawn_job(row);
        }
        Ok(id)
    }

    /// Records a new job (`scheduled`) without starting it; returns its id.
    pub(super) async fn record_job(
        self,
        kind: &str,
        target: &str,
        params: Value,
    ) -> Result<String> {
        let now = util::now_ms();
        let row = JobRow {
            id: util::random_string(16),
            kind: kind.to_owned(),
            target: target.to_owned(),
            params: params.to_string(),
            status: "scheduled".into(),
            done: 0,
            total: 0,
            result: None,
            error: None,
            created_ts: now,
            updated_ts: now,
        };
        self.db.insert_job(&row, self.cluster.slot()).await?;
        Ok(row.id)
    }

    /// Records a job and runs it in its own task (a request that goes away does not cut it),
    /// waiting for its end: its result, or its error.
    pub(super) async fn run_job_inline(
        self,
        kind: &str,
        target: &str,
        params: Value,
    ) -> Result<Value> {
        let id = self.record_job(kind, target, params).await?;
        let row = self
            .db
            .get_job(&id)
            .await?
            .ok_or_else(|| Error::unknown("admin job vanished"))?;
        let s = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let row = tokio::spawn(async move { s.admin().run_job(row).await })
            .await
            .map_err(|e| Error::unknown(format!("admin job: {e}")))?;
        match (row.status.as_str(), row.result) {
            ("complete", Some(r)) => Ok(serde_json::from_str(&r).unwrap_or_default()),
            _ => Err(Error::unknown(
                row.error.unwrap_or_else(|| "admin job failed".into()),
            )),
        }
    }

    fn spawn_job(self, row: JobRow) {
        let Some(s) = self.me.upgrade() else { return };
        tokio::spawn(async move { s.admin().run_job(row).await });
    }

    /// Cluster: runs the unfinished jobs of nodes that are gone (each adopted by one node).
    pub async fn adopt_orphan_jobs(self) {
        if !self.cluster.shared() {
            return;
        }
        match self.db.adopt_orphan_jobs(self.cluster.slot()).await {
            Ok(rows) => {
                for row in rows {
                    tracing::info!(job = %row.id, kind = %row.kind, target = %row.target, "adopting the admin job of a node that is gone");
                    self.spawn_job(row);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for orphaned admin jobs"),
        }
    }

    /// Starts again every job a previous process left scheduled or running (alone: on a
    /// cluster, jobs of nodes that are gone are adopted instead).
    pub(super) async fn resume_jobs(self) -> Result<()> {
        if self.cluster.shared() {
            self.adopt_orphan_jobs().await;
            return Ok(());
        }
        for row in self.db.unfinished_jobs().await? {
            tracing::info!(job = %row.id, kind = %row.kind, target = %row.target, "resuming admin job");
            self.spawn_job(row);
        }
        Ok(())
    }

    /// Runs a job to its end and records how it ended.
    pub(super) async fn run_job(self, mut row: JobRow) -> JobRow {
        row.status = "active".into();
        tracing::info!(job = %row.id, kind = %row.kind, target = %row.target, "admin job started");
        if let Err(e) = self.db.update_job(&row).await {
            tracing::error!(job = %row.id, error = %e, "admin job: cannot record its start");
        }
        let active = self.metrics.job_started(&row.kind);
        let mut progress = Progress {
            row,
            logged_tenth: 0,
        };
        let outcome = match progress.row.kind.as_str() {
            SHUTDOWN_ROOM => self.run_room_delete(&mut progress).await,
            DELETE_MEDIA => self.run_media_delete(&mut progress).await,
            PURGE_REMOTE_MEDIA => self.run_remote_purge(&mut progress).await,
            PURGE_HISTORY => self.run_history_purge(&mut progress).await,
            REDACT_USER => self.run_user_redact(&mut progress).await,
            other => Err(Error::unknown(format!("unknown job kind {other}"))),
        };
        let mut row = progress.row;
        drop(active);
        self.metrics.job_ended(&row.kind, outcome.is_ok());
        match outcome {
            Ok(result) => {
                row.status = "complete".into();
                row.result = Some(result.to_string());
                tracing::info!(job = %row.id, kind = %row.kind, target = %row.target, "admin job complete");
            }
            Err(e) => {
                row.status = "failed".into();
                row.error = Some(e.message.clone());
                tracing::error!(job = %row.id, kind = %row.kind, target = %row.target, error = %e.message, "admin job failed");
            }
        }
        if let Err(e) = self.db.update_job(&row).await {
            tracing::error!(job = %row.id, error = %e, "admin job: cannot record its end");
        }
        row
    }

    /// `GET /_synapse/admin/v1/scheduled_tasks`: jobs newest first, as Synapse's
    /// `{scheduled_tasks: [{id, action, status, timestamp_ms, resource_id, result, error}]}`.
    pub async fn scheduled_tasks(
        self,
        action: Option<&str>,
        status: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Value> {
        let rows = self.db.list_jobs(action, status, 1000).await?;
        let tasks: Vec<Value> = rows
            .iter()
            .filter(|r| resource_id.is_none_or(|t| t == r.target))
            .map(|r| {
                json!({
                    "id": r.id,
                    "action": r.kind,
                    "status": r.status,
                    "timestamp_ms": r.updated_ts,
                    "resource_id": r.target,
                    "result": r.result.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
                    "error": r.error,
                    "progress": { "done": r.done, "total": r.total },
                })
            })
            .collect();
        Ok(json!({ "scheduled_tasks": tasks }))
    }
}
