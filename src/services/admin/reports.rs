//! Reports for moderators: event reports (`/v1/event_reports`) and user reports
//! (`/v1/user_reports`), listed, shown and deleted; and the client's `POST /users/{id}/report`.

use std::collections::HashMap;

use ruma::UserId;
use serde_json::{json, Value};

use super::{AdminFace, Page};
use crate::{
    store::{admin_users::ReportTable, reports::ReportFilter, reports::ReportRow},
    util, Error, Result,
};

/// The filters of a report listing.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub from: Option<i64>,
    pub limit: Option<i64>,
    /// `b` (default): newest first.
    pub dir: Option<String>,
    pub room_id: Option<String>,
    /// The reporter.
    pub user_id: Option<String>,
    /// Event reports: the reported event's sender. User reports: the reported user.
    pub target: Option<String>,
}

impl ReportQuery {
    fn newest_first(&self) -> Result<bool> {
        match self.dir.as_deref() {
            None | Some("b") => Ok(true),
            Some("f") => Ok(false),
            Some(_) => Err(Error::invalid_param("Unknown direction")),
        }
    }
}

/// Longest reason of a user report, in bytes.
const MAX_REASON: usize = 4096;

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/event_reports`: `{event_reports, next_token?, total}`.
    pub async fn event_reports(self, q: ReportQuery) -> Result<Value> {
        let page = Page::new(q.from, q.limit, 100)?;
        let filter = ReportFilter {
            room_id: q.room_id.as_deref(),
            user_id: q.user_id.as_deref(),
            events: Some(true),
            sender: q.target.as_deref(),
        };
        let rows = self
            .db
            .list_reports(&filter, page.from, page.limit, q.newest_first()?)
            .await?;
        let total = self.db.count_reports(&filter).await?;
        let list = self.report_entries(&rows, false).await?;
        let mut out = json!({ "event_reports": list, "total": total });
        if let Some(next) = page.next(rows.len(), total) {
            out["next_token"] = json!(next);
        }
        Ok(out)
    }

    /// `GET /_synapse/admin/v1/event_reports/{id}`: with the reported event's JSON.
    pub async fn event_report(self, id: i64) -> Result<Value> {
        let row = self
            .db
            .get_report(id)
            .await?
            .filter(|r| r.event_id.is_some())
            .ok_or_else(|| Error::not_found("Event report not found"))?;
        let mut list = self.report_entries(&[row], true).await?;
        Ok(list.pop().unwrap_or_default())
    }

    /// The listing entries of these reports: room name and alias, sender of the event, and
    /// (`with_event`) the event itself, read for the whole page at once.
    async fn report_entries(self, rows: &[ReportRow], with_event: bool) -> Result<Vec<Value>> {
        let mut rooms: Vec<String> = rows.iter().map(|r| r.room_id.clone()).collect();
        rooms.sort();
        rooms.dedup();
        let mut names: HashMap<(String, String), String> = HashMap::new();
        for e in self
            .db
            .current_state_events(&rooms, Some(&["m.room.name", "m.room.canonical_alias"]))
            .await?
        {
            let v: Value = serde_json::from_str(&e.json).unwrap_or_default();
            let key = if e.kind == "m.room.name" {
                "name"
            } else {
                "alias"
            };
            if let Some(s) = v["content"][key].as_str() {
                names.insert((e.room_id.clone(), e.kind.clone()), s.to_owned());
            }
        }
        let ids: Vec<String> = rows.iter().filter_map(|r| r.event_id.clone()).collect();
        let events: HashMap<String, _> = self
            .db
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|e| (e.event_id.clone(), e))
            .collect();
        Ok(rows
            .iter()
            .map(|r| {
                let event = r.event_id.as_ref().and_then(|e| events.get(e));
                let name = |kind: &str| names.get(&(r.room_id.clone(), kind.to_owned()));
                let mut v = json!({
                    "id": r.id,
                    "received_ts": r.received_ts,
                    "room_id": r.room_id,
                    "name": name("m.room.name"),
                    "canonical_alias": name("m.room.canonical_alias"),
                    "event_id": r.event_id,
                    "user_id": r.user_id,
                    "reason": r.reason,
                    "score": r.score,
                    "sender": event.map(|e| e.sender.clone()),
                });
                if with_event {
                    v["event_json"] = event
                        .and_then(|e| serde_json::from_str::<Value>(&e.json).ok())
                        .unwrap_or(Value::Null);
                }
                v
            })
            .collect())
    }

    /// `DELETE /_synapse/admin/v1/event_reports/{id}` and `/user_reports/{id}`.
    pub async fn delete_report(self, users: bool, id: i64) -> Result<()> {
        let table = if users {
            ReportTable::Users
        } else {
            ReportTable::Content
        };
        if !self.db.delete_report_row(table, id).await? {
            return Err(Error::not_found("Report not found"));
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/user_reports`: `{user_reports, next_token?, total}`.
    pub async fn user_reports(self, q: ReportQuery) -> Result<Value> {
        let page = Page::new(q.from, q.limit, 100)?;
        let (rows, total) = self
            .db
            .list_user_reports(
                q.target.as_deref(),
                q.user_id.as_deref(),
                page.from,
                page.limit,
                q.newest_first()?,
            )
            .await?;
        let list: Vec<Value> = rows.iter().map(user_report_entry).collect();
        let mut out = json!({ "user_reports": list, "total": total });
        if let Some(next) = page.next(rows.len(), total) {
            out["next_token"] = json!(next);
        }
        Ok(out)
    }

    /// `GET /_synapse/admin/v1/user_reports/{id}`.
    pub async fn user_report(self, id: i64) -> Result<Value> {
        let row = self
            .db
            .get_user_report(id)
            .await?
            .ok_or_else(|| Error::not_found("User report not found"))?;
        Ok(user_report_entry(&row))
    }

    /// `POST /_matrix/client/v3/users/{userId}/report`: a local account or one this server
    /// knows from a room (else 404, so reports cannot probe for accounts elsewhere).
    pub async fn report_user(self, reporter: &UserId, target: &UserId, reason: &str) -> Result<()> {
        if reason.len() > MAX_REASON {
            return Err(Error::too_large(format!(
                "The reason must be at most {MAX_REASON} bytes"
            )));
        }
        self.ratelimit
            .check("report", reporter.as_str(), self.config.rate_limits.message)?;
        let known = if self.is_local(target) {
            self.db.get_user(target.as_str()).await?.is_some()
        } else {
            !self.db.user_memberships(target.as_str()).await?.is_empty()
        };
        if !known {
            return Err(Error::not_found("User not found"));
        }
        self.db
            .insert_user_report(target.as_str(), reporter.as_str(), reason, util::now_ms())
            .await?;
        tracing::info!(reporter = %reporter, target = %target, "user reported");
        Ok(())
    }
}

fn user_report_entry(r: &crate::store::admin_users::UserReportRow) -> Value {
    json!({
        "id": r.id,
        "received_ts": r.received_ts,
        "target_user_id": r.target_user_id,
        "user_id": r.user_id,
        "reason": r.reason,
    })
}
