//! Deleting a room (`DELETE /_synapse/admin/v1|v2/rooms/{room_id}`), as Synapse's shutdown
//! and purge: block it if asked, move its local members out (and into a notice room when one
//! is asked for), remove its local aliases and directory entry, then purge it from the
//! database in chunks. A background job ([`super::jobs`]); v1 waits for it.

use ruma::{OwnedUserId, RoomAliasId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    jobs::{Progress, SHUTDOWN_ROOM},
    AdminFace,
};
use crate::{services::rooms::requests::CreateRoomRequest, Error, Result};

/// The body of a room deletion (every field optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DeleteRoom {
    pub new_room_user_id: Option<String>,
    pub room_name: Option<String>,
    pub message: Option<String>,
    pub block: bool,
    /// Synapse's default: the room is purged.
    #[serde(default = "yes")]
    pub purge: bool,
    pub force_purge: bool,
    /// Who asked (recorded as the blocker).
    #[serde(skip_deserializing)]
    pub requester: String,
}

fn yes() -> bool {
    true
}

/// Events purged per transaction.
const PURGE_CHUNK: i64 = 1000;

/// What a shutdown reports (Synapse's `shutdown_room` object).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shutdown {
    kicked_users: Vec<String>,
    failed_to_kick_users: Vec<String>,
    local_aliases: Vec<String>,
    new_room_id: Option<String>,
}

impl AdminFace<'_> {
    /// Checks a deletion and schedules it; returns the delete id (v2) or, with `wait`, runs
    /// it and returns its result (v1).
    pub async fn delete_room(
        self,
        by: &UserId,
        room: &RoomId,
        mut req: DeleteRoom,
        wait: bool,
    ) -> Result<Value> {
        if req.room_name.as_ref().is_some_and(|n| n.len() > 255)
            || req.message.as_ref().is_some_and(|m| m.len() > 65_536)
        {
            return Err(Error::invalid_param("room_name or message too long"));
        }
        if let Some(u) = &req.new_room_user_id {
            let u = crate::util::parse_user_id(u)?;
            if !self.is_local(&u) || self.db.get_user(u.as_str()).await?.is_none() {
                return Err(Error::bad_request("User must be our own: new_room_user_id"));
            }
        }
        let known = self.db.room_version(room.as_str()).await?.is_some();
        if !known && !req.block {
            return Err(Error::not_found("Unknown room"));
        }
        if self
            .db
            .jobs_of(SHUTDOWN_ROOM, room.as_str())
            .await?
            .iter()
            .any(|j| j.status == "scheduled" || j.status == "active")
        {
            return Err(Error::bad_request(format!(
                "Shutdown and purge already in progress for {room}"
            )));
        }
        req.requester = by.to_string();
        let params = serde_json::to_value(&req)?;
        if !wait {
            let id = self.start_job(SHUTDOWN_ROOM, room.as_str(), params).await?;
            return Ok(json!({ "delete_id": id }));
        }
        let id = self
            .record_job(SHUTDOWN_ROOM, room.as_str(), params)
            .await?;
        let row = self
            .db
            .get_job(&id)
            .await?
            .ok_or_else(|| Error::unknown("job vanished"))?;
        let done = self.run_job(row).await;
        match (done.status.as_str(), done.result) {
            ("complete", Some(r)) => Ok(serde_json::from_str(&r)?),
            _ => Err(Error::unknown(done.error.unwrap_or_default())),
        }
    }

    /// The job: every step may run again after a restart without harm.
    pub(super) async fn run_room_delete(self, p: &mut Progress) -> Result<Value> {
        let req: DeleteRoom = serde_json::from_str(&p.row.params)?;
        let room = RoomId::parse(&p.row.target).map_err(|_| Error::unknown("bad room id"))?;
        let mut out = Shutdown::default();
        if req.block {
            let by = if req.requester.is_empty() {
                format!("@admin:{}", self.server_name)
            } else {
                req.requester.clone()
            };
            self.db.set_room_block(room.as_str(), Some(&by)).await?;
        }
        let known = self.db.room_version(room.as_str()).await?.is_some();
        if known {
            let members = self.local_members(&room).await?;
            let events = self.db.count_room_events(room.as_str()).await?;
            p.total(members.len() as i64 + if req.purge { events } else { 0 });
            let new_room = match &req.new_room_user_id {
                Some(u) if !members.is_empty() => Some(self.notice_room(u, &req).await?),
                _ => None,
            };
            for user in &members {
                match self.rooms().leave_room(user, &room, None).await {
                    Ok(()) => out.kicked_users.push(user.to_string()),
                    Err(e) => {
                        tracing::warn!(%room, %user, error = %e.message, "room shutdown: cannot remove member");
                        out.failed_to_kick_users.push(user.to_string());
                    }
                }
                if let Some(new) = &new_room {
                    if let Err(e) = self
                        .rooms()
                        .join_room(user, new.as_str(), None, vec![])
                        .await
                    {
                        tracing::warn!(%user, error = %e.message, "room shutdown: cannot join the notice room");
                    }
                }
                p.advance(self, 1).await?;
            }
            out.new_room_id = new_room.map(|r| r.to_string());
            out.local_aliases = self.remove_aliases(&room).await?;
            if req.purge {
                self.purge_room(&room, req.force_purge, p).await?;
            }
        }
        Ok(serde_json::to_value(out)?)
    }

    /// Local users joined, invited or knocking.
    async fn local_members(self, room: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .db
            .room_members(room.as_str())
            .await?
            .into_iter()
            .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
            .filter_map(|m| UserId::parse(&m.user_id).ok())
            .filter(|u| self.is_local(u))
            .collect())
    }

    /// The room where the removed members are told why (Synapse's defaults).
    async fn notice_room(self, creator: &str, req: &DeleteRoom) -> Result<ruma::OwnedRoomId> {
        let creator = crate::util::parse_user_id(creator)?;
        let create: CreateRoomRequest = serde_json::from_value(json!({
            "preset": "public_chat",
            "name": req.room_name.as_deref().unwrap_or("Content Violation Notification"),
            "power_level_content_override": { "users_default": -10 },
        }))?;
        let room = self.rooms().create_room(&creator, create).await?;
        let requester = crate::services::requester::Requester {
            user_id: creator,
            device_id: String::new(),
        };
        let body = req.message.as_deref().unwrap_or(
            "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.",
        );
        self.rooms()
            .send_event(
                &requester,
                &room,
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": body }),
                None,
            )
            .await?;
        Ok(room)
    }

    /// Removes the room's local aliases and its directory entry; returns the aliases.
    async fn remove_aliases(self, room: &RoomId) -> Result<Vec<String>> {
        let aliases = self.db.room_aliases(room.as_str()).await?;
        for a in &aliases {
            if RoomAliasId::parse(a).is_ok() {
                self.db.delete_alias(a).await?;
            }
        }
        self.db.set_room_public(room.as_str(), false).await?;
        Ok(aliases)
    }

    /// Deletes the room from the database, under the room's lock (no event is written to it
    /// meanwhile), in chunks, then drops what is cached of it. Refused while local users are
    /// still in it, unless forced.
    async fn purge_room(self, room: &RoomId, force: bool, p: &mut Progress) -> Result<()> {
        if !force && !self.local_members(room).await?.is_empty() {
            return Err(Error::bad_request(
                "Cannot purge a room with local users in it (use force_purge)",
            ));
        }
        let mut guard = self.rooms().lock_room(room).await?;
        loop {
            let n = self
                .db
                .purge_room_events(room.as_str(), PURGE_CHUNK)
                .await?;
            if n == 0 {
                break;
            }
            p.advance(self, n as i64).await?;
        }
        self.db.purge_room_rest(room.as_str()).await?;
        self.rooms().forget_room_state(room, &mut guard);
        Ok(())
    }

    /// `GET /_synapse/admin/v2/rooms/delete_status/{delete_id}`.
    pub async fn delete_status(self, id: &str) -> Result<Value> {
        let row = self
            .db
            .get_job(id)
            .await?
            .filter(|j| j.kind == SHUTDOWN_ROOM)
            .ok_or_else(|| Error::not_found(format!("delete id '{id}' not found")))?;
        Ok(status_entry(&row, false))
    }

    /// `GET /_synapse/admin/v2/rooms/{room_id}/delete_status`.
    pub async fn room_delete_status(self, room: &RoomId) -> Result<Value> {
        let rows = self.db.jobs_of(SHUTDOWN_ROOM, room.as_str()).await?;
        if rows.is_empty() {
            return Err(Error::not_found(format!(
                "No delete task for room_id '{room}' found"
            )));
        }
        let results: Vec<Value> = rows.iter().map(|r| status_entry(r, true)).collect();
        Ok(json!({ "results": results }))
    }
}

/// One deletion's status as Synapse shows it.
fn status_entry(row: &crate::store::admin_jobs::JobRow, with_id: bool) -> Value {
    let shutdown = row
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .unwrap_or_else(|| serde_json::to_value(Shutdown::default()).unwrap_or_default());
    let mut v = json!({
        "status": if row.status == "scheduled" { "scheduled" } else { row.status.as_str() },
        "shutdown_room": shutdown,
        "progress": { "done": row.done, "total": row.total },
    });
    if with_id {
        v["delete_id"] = json!(row.id);
        v["room_id"] = json!(row.target);
    }
    if let Some(e) = &row.error {
        v["error"] = json!(e);
    }
    v
}
