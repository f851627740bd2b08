//! Redacting a user's events (`POST /_synapse/admin/v1/user/{user_id}/redact`), as Synapse
//! does: in the rooms given (none: every room the user is or was in), the user's newest
//! `limit` events (1 000 by default) are looked at, and every one not redacted yet — messages
//! and any other non-state event, and the user's joins (their display name and avatar) — is
//! redacted. Redactions are not redacted, nor the user's other state events (the room's
//! name, rules and powers stay).
//!
//! Who redacts: a local user still in the room redacts their own events (Synapse puppets
//! them; they may always redact their own); a remote user, a local one who left, or any user
//! with `use_admin`, is redacted by the admin, which needs to be in the room with the power to
//! redact. What fails is reported per event in `failed_redactions`.
//!
//! A background job ([`super::jobs`]): redacted events are skipped when it resumes.

use ruma::{OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    jobs::{Progress, REDACT_USER},
    AdminFace,
};
use crate::{services::requester::Requester, Error, Result};

/// Events looked at per room when no `limit` is given (Synapse's default).
const DEFAULT_LIMIT: i64 = 1000;

/// The body of a redaction of a user's events.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RedactUser {
    pub rooms: Option<Vec<String>>,
    #[serde(default)]
    pub reason: Option<Value>,
    #[serde(default)]
    pub limit: Option<Value>,
    #[serde(default)]
    pub use_admin: Option<bool>,
}

/// What the job keeps in its row.
#[derive(Debug, Serialize, Deserialize)]
struct RedactParams {
    rooms: Vec<String>,
    reason: Option<String>,
    limit: i64,
    use_admin: bool,
    admin: String,
}

impl AdminFace<'_> {
    /// Checks a redaction of `user`'s events and starts it; returns `{redact_id}`.
    pub async fn redact_user(self, by: &UserId, user: &UserId, req: RedactUser) -> Result<Value> {
        let rooms = req
            .rooms
            .ok_or_else(|| Error::bad_request("Must provide a value for rooms."))?;
        for r in &rooms {
            RoomId::parse(r).map_err(|_| Error::invalid_param(format!("Invalid room id {r}")))?;
        }
        let reason = match req.reason {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(Error::bad_request(
                    "If a reason is provided it must be a string.",
                ))
            }
        };
        let limit =
            match req.limit {
                None | Some(Value::Null) => DEFAULT_LIMIT,
                Some(v) => match v.as_i64() {
                    Some(n) if n > 0 => n,
                    _ => return Err(Error::bad_request(
                        "If limit is provided it must be a non-negative integer greater than 0.",
                    )),
                },
            };
        if self.is_local(user) && self.db.get_user(user.as_str()).await?.is_none() {
            return Err(Error::not_found("User not found"));
        }
        let params = serde_json::to_value(RedactParams {
            rooms,
            reason,
            limit,
            use_admin: req.use_admin.unwrap_or(false),
            admin: by.to_string(),
        })?;
        let id = self.start_job(REDACT_USER, user.as_str(), params).await?;
        Ok(json!({ "redact_id": id }))
    }

    /// The job: every candidate event of every room, one redaction each.
    pub(super) async fn run_user_redact(self, p: &mut Progress) -> Result<Value> {
        let params: RedactParams = serde_json::from_str(&p.row.params)?;
        let user = UserId::parse(&p.row.target).map_err(|_| Error::unknown("bad user id"))?;
        let admin = UserId::parse(&params.admin).map_err(|_| Error::unknown("bad admin id"))?;
        let rooms: Vec<OwnedRoomId> = if params.rooms.is_empty() {
            self.db
                .user_memberships(user.as_str())
                .await?
                .into_iter()
                .filter_map(|m| RoomId::parse(m.room_id).ok())
                .collect()
        } else {
            params
                .rooms
                .iter()
                .filter_map(|r| RoomId::parse(r).ok())
                .collect()
        };
        // Failures of an earlier run of this job are kept (and retried).
        let mut failed: Map<String, Value> = p
            .row
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .and_then(|v| {
                v.get("failed_redactions")
                    .and_then(Value::as_object)
                    .cloned()
            })
            .unwrap_or_default();
        let mut todo: Vec<(OwnedRoomId, OwnedEventId)> = vec![];
        for room in &rooms {
            for ev in self
                .db
                .events_sent_by(room.as_str(), user.as_str(), params.limit)
                .await?
            {
                if ev.redacted_by.is_some() || ev.kind == "m.room.redaction" {
                    continue;
                }
                let state_ok = match ev.state_key.as_deref() {
                    None => true,
                    Some(k) => {
                        ev.kind == "m.room.member" && k == user.as_str() && is_join(&ev.json)
                    }
                };
                if !state_ok {
                    continue;
                }
                if let Ok(id) = OwnedEventId::try_from(ev.event_id) {
                    todo.push((room.clone(), id));
                }
            }
        }
        p.total(p.row.done + todo.len() as i64);
        for (room, event) in todo {
            let joined = self
                .db
                .membership(user.as_str(), room.as_str())
                .await?
                .is_some_and(|m| m.membership == "join");
            let redactor = if self.is_local(&user) && joined && !params.use_admin {
                user.clone()
            } else {
                admin.clone()
            };
            let r = Requester {
                user_id: redactor,
                device_id: String::new(),
            };
            match self
                .rooms()
                .redact_scoped(&r, &room, &event, params.reason.as_deref(), None)
                .await
            {
                Ok(_) => {
                    failed.remove(event.as_str());
                }
                Err(e) => {
                    tracing::warn!(%room, %event, error = %e.message, "redacting a user's events: cannot redact");
                    failed.insert(event.to_string(), json!(e.message));
                }
            }
            p.row.result = Some(json!({ "failed_redactions": failed }).to_string());
            p.advance(self, 1).await?;
        }
        Ok(json!({ "failed_redactions": failed }))
    }

    /// `GET /_synapse/admin/v1/user/redact_status/{redact_id}`: `{status, failed_redactions}`,
    /// the status in Synapse's words (`scheduled`, `active`, `completed`, `failed`).
    pub async fn redact_user_status(self, id: &str) -> Result<Value> {
        let row = self
            .db
            .get_job(id)
            .await?
            .filter(|j| j.kind == REDACT_USER)
            .ok_or_else(|| Error::not_found(format!("redact id '{id}' not found")))?;
        let status = match row.status.as_str() {
            "complete" => "completed",
            "failed" => "failed",
            "active" => "active",
            _ => "scheduled",
        };
        let failed = row
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .and_then(|v| v.get("failed_redactions").cloned())
            .unwrap_or_else(|| json!({}));
        Ok(json!({ "status": status, "failed_redactions": failed }))
    }
}

/// Whether a membership event's content is a join.
fn is_join(json: &str) -> bool {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v["content"]["membership"].as_str().map(|m| m == "join"))
        .unwrap_or(false)
}
