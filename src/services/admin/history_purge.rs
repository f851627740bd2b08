//! Purging a room's history (`POST /_synapse/admin/v1/purge_history/{room_id}[/{event_id}]`),
//! as Synapse does: every event below the purge point's depth leaves the timeline (the point
//! itself and the events at its depth stay, so the latest event always does). Remote
//! non-state events are deleted, and local ones with `delete_local_events`; what is kept —
//! state events (the current state and what the auth rules cite), local events, redactions —
//! stays known as an outlier, out of `/messages`. The room's current state, its forward
//! extremities and its state snapshots are never touched, so the room goes on working.
//!
//! A background job ([`super::jobs`]) in chunks, one transaction each: a chunk's events are
//! gone or outliers once it commits, so a job cut short picks the next ones on resume.

use ruma::{RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    jobs::{Progress, PURGE_HISTORY},
    AdminFace,
};
use crate::{store::admin_jobs::JobRow, Error, Result};

/// Events looked at per transaction.
const CHUNK: i64 = 500;

/// The body of a purge (every field optional; one purge point is required).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PurgeHistory {
    pub delete_local_events: Option<Value>,
    pub purge_up_to_event_id: Option<String>,
    pub purge_up_to_ts: Option<Value>,
}

/// What the job keeps in its row: the point's depth, and whether local events go too.
#[derive(Debug, Serialize, Deserialize)]
struct PurgeParams {
    depth: i64,
    delete_local_events: bool,
}

impl AdminFace<'_> {
    /// Checks a purge and starts it; returns `{purge_id}`. The point is the event of the path,
    /// else `purge_up_to_event_id`, else the first event sent at or after `purge_up_to_ts`.
    pub async fn purge_history(
        self,
        room: &RoomId,
        path_event: Option<&str>,
        req: PurgeHistory,
    ) -> Result<Value> {
        if self.db.room_version(room.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        // Synapse reads the flag as Python's bool(): any truthy value.
        let delete_local_events = match &req.delete_local_events {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        };
        if path_event.is_none()
            && req.purge_up_to_event_id.is_some()
            && req.purge_up_to_ts.is_some()
        {
            return Err(Error::invalid_param(
                "Give one of purge_up_to_event_id and purge_up_to_ts, not both",
            ));
        }
        let event = path_event.map(str::to_owned).or(req.purge_up_to_event_id);
        let depth = match (event, req.purge_up_to_ts) {
            (Some(id), _) => {
                let (in_room, depth) = self
                    .db
                    .event_room_depth(&id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("Event {id} not found")))?;
                if in_room != room.as_str() {
                    return Err(Error::bad_request("Event is for wrong room."));
                }
                depth
            }
            (None, Some(ts)) => {
                let ts = ts
                    .as_i64()
                    .ok_or_else(|| Error::bad_json("purge_up_to_ts must be an int"))?;
                self.db
                    .purge_point_at_ts(room.as_str(), ts)
                    .await?
                    .ok_or_else(|| {
                        Error::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            "M_NOT_FOUND",
                            "there is no event to be purged",
                        )
                    })?
            }
            (None, None) => {
                return Err(Error::bad_json(
                    "must specify purge_up_to_event_id or purge_up_to_ts",
                ))
            }
        };
        if self
            .db
            .jobs_of(PURGE_HISTORY, room.as_str())
            .await?
            .iter()
            .any(|j| j.status == "scheduled" || j.status == "active")
        {
            return Err(Error::bad_request(format!(
                "History purge already in progress for {room}"
            )));
        }
        let params = serde_json::to_value(PurgeParams {
            depth,
            delete_local_events,
        })?;
        let id = self.start_job(PURGE_HISTORY, room.as_str(), params).await?;
        Ok(json!({ "purge_id": id }))
    }

    /// The job: chunk after chunk until no timeline event is left below the point.
    pub(super) async fn run_history_purge(self, p: &mut Progress) -> Result<Value> {
        let params: PurgeParams = serde_json::from_str(&p.row.params)?;
        let room = p.row.target.clone();
        let left = self.db.count_events_below(&room, params.depth).await?;
        p.total(p.row.done + left);
        let (mut deleted, mut kept) = (0_i64, 0_i64);
        loop {
            let chunk = self
                .db
                .purge_history_candidates(&room, params.depth, CHUNK)
                .await?;
            if chunk.is_empty() {
                break;
            }
            let (mut delete, mut hide) = (vec![], vec![]);
            for ev in chunk {
                let local = UserId::parse(&ev.sender).is_ok_and(|u| self.is_local(&u));
                let deletable = ev.state_key.is_none()
                    && ev.kind != "m.room.redaction"
                    && (params.delete_local_events || !local);
                if deletable {
                    delete.push(ev.event_id);
                } else {
                    hide.push(ev.event_id);
                }
            }
            self.db.purge_history_chunk(&room, &delete, &hide).await?;
            deleted += delete.len() as i64;
            kept += hide.len() as i64;
            p.advance(self, (delete.len() + hide.len()) as i64).await?;
        }
        tracing::info!(room = %room, deleted, kept_as_outliers = kept, "history purge done");
        Ok(json!({ "deleted": deleted, "kept_as_outliers": kept }))
    }

    /// `GET /_synapse/admin/v1/purge_history_status/{purge_id}`: `{status, error?}` with
    /// Synapse's words (`active`, `complete`, `failed`).
    pub async fn purge_history_status(self, id: &str) -> Result<Value> {
        let row: JobRow = self
            .db
            .get_job(id)
            .await?
            .filter(|j| j.kind == PURGE_HISTORY)
            .ok_or_else(|| Error::not_found(format!("purge id '{id}' not found")))?;
        let status = match row.status.as_str() {
            "complete" => "complete",
            "failed" => "failed",
            _ => "active",
        };
        let mut v = json!({ "status": status });
        if let Some(e) = &row.error {
            v["error"] = json!(e);
        }
        Ok(v)
    }
}
