//! Rooms read and repaired as the server (Synapse's admin `rooms.py` and `room_membership`):
//! /messages and /context without membership nor history visibility, timestamp_to_event, the
//! space hierarchy of any local room, one event by id, joining a local user to a room, making
//! a user room admin through the local member with the most power, and dropping all forward
//! extremities but the latest.

use std::collections::HashSet;

use ruma::{OwnedRoomId, RoomAliasId, RoomId, UserId};
use serde_json::{json, Value};

use super::AdminFace;
use crate::{
    services::{
        filter::RoomEventFilter,
        requester::Requester,
        rooms::{client_event::Format, HierarchyRequest, MemberOp},
        streams::parse_position,
    },
    store::events::{Dir, EventRow},
    Error, Result,
};

/// The query of the admin `/messages`.
pub struct AdminMessages<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub dir: Dir,
    pub limit: i64,
    pub filter: &'a RoomEventFilter,
}

/// Whether an event has a place in the timeline (never rejected, soft-failed nor an outlier).
fn in_timeline(row: &EventRow) -> bool {
    !row.is_rejected() && !row.is_soft_failed() && !row.is_outlier()
}

impl AdminFace<'_> {
    /// 404 unless the room is known here.
    async fn known_room(self, room: &RoomId) -> Result<()> {
        if self.db.room_version(room.as_str()).await?.is_none() {
            return Err(Error::not_found("Room not found"));
        }
        Ok(())
    }

    /// A room id, or the room of a local (or remote) alias.
    async fn room_or_alias(self, id_or_alias: &str) -> Result<OwnedRoomId> {
        if id_or_alias.starts_with('#') {
            let alias = RoomAliasId::parse(id_or_alias)
                .map_err(|_| Error::invalid_param(format!("Invalid room alias {id_or_alias:?}")))?;
            self.rooms().resolve_alias(&alias).await
        } else {
            crate::util::parse_room_id(id_or_alias)
        }
    }

    /// The current member events of the senders of `rows` (lazy-loading members).
    async fn senders_members(self, room: &RoomId, rows: &[&EventRow]) -> Result<Vec<Value>> {
        let senders: HashSet<&str> = rows.iter().map(|r| r.sender.as_str()).collect();
        let senders: Vec<String> = senders.into_iter().map(str::to_owned).collect();
        let members = self
            .db
            .current_members(&[room.to_string()], &senders)
            .await?;
        self.rooms()
            .format_events(&members, None, Format::Client)
            .await
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/messages`: the client `/messages` page, read as
    /// the server (every timeline event, whatever the history visibility).
    pub async fn admin_room_messages(self, room: &RoomId, q: AdminMessages<'_>) -> Result<Value> {
        self.known_room(room).await?;
        if q.limit < 0 {
            return Err(Error::invalid_param(
                "Query parameter limit must be a positive integer.",
            ));
        }
        let limit = q.limit.clamp(1, 1000);
        let from_pos = match q.from {
            Some(t) => parse_position(t)?,
            None => match q.dir {
                Dir::Backward => self.events_stream.current(),
                Dir::Forward => i64::MIN,
            },
        };
        let to_pos = q.to.map(parse_position).transpose()?;
        let rows = match q.dir {
            // A token is the position after an event: backward from T includes T.
            Dir::Backward => {
                self.db
                    .room_events(
                        room.as_str(),
                        from_pos.saturating_add(1),
                        to_pos,
                        q.dir,
                        limit,
                    )
                    .await?
            }
            Dir::Forward => {
                let upper = to_pos.map(|t| t.saturating_add(1));
                self.db
                    .room_events(room.as_str(), from_pos, upper, q.dir, limit)
                    .await?
            }
        };
        let end = match rows.last() {
            Some(last) if rows.len() as i64 == limit => Some(match q.dir {
                Dir::Backward => last.stream_ordering - 1,
                Dir::Forward => last.stream_ordering,
            }),
            _ => None,
        };
        let rows: Vec<EventRow> = rows.into_iter().filter(|r| q.filter.allows(r)).collect();
        let mut out = json!({
            "start": format!("t{from_pos}"),
            "chunk": self.rooms().format_events(&rows, None, Format::Client).await?,
        });
        if let Some(e) = end {
            out["end"] = json!(format!("t{e}"));
        }
        if q.filter.lazy_load_members {
            let refs: Vec<&EventRow> = rows.iter().collect();
            out["state"] = json!(self.senders_members(room, &refs).await?);
        }
        Ok(out)
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/context/{event_id}`: the client `/context`, read
    /// as the server; `state` is the room's current state (or the senders' members when lazy).
    pub async fn admin_room_context(
        self,
        room: &RoomId,
        event_id: &str,
        limit: i64,
        filter: &RoomEventFilter,
    ) -> Result<Value> {
        self.known_room(room).await?;
        if limit < 0 {
            return Err(Error::invalid_param(
                "Query parameter limit must be a positive integer.",
            ));
        }
        let row = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room.as_str() && in_timeline(r))
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let limit = limit.min(100);
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let pos = row.stream_ordering;
        let mut before = vec![];
        if before_n > 0 {
            before = self
                .db
                .room_events(room.as_str(), pos, None, Dir::Backward, before_n)
                .await?;
        }
        let mut after = vec![];
        if after_n > 0 {
            after = self
                .db
                .room_events(room.as_str(), pos, None, Dir::Forward, after_n)
                .await?;
        }
        let start = before
            .last()
            .map(|r| r.stream_ordering.saturating_sub(1))
            .unwrap_or(pos.saturating_sub(1));
        let end = after.last().map(|r| r.stream_ordering).unwrap_or(pos);
        before.retain(|r| filter.allows(r));
        after.retain(|r| filter.allows(r));
        let state = if filter.lazy_load_members {
            let all: Vec<&EventRow> = before
                .iter()
                .chain(std::iter::once(&row))
                .chain(after.iter())
                .collect();
            self.senders_members(room, &all).await?
        } else {
            self.rooms().full_state(room).await?
        };
        let rooms = self.rooms();
        Ok(json!({
            "event": rooms.format_events(&[row], None, Format::Client).await?.pop(),
            "events_before": rooms.format_events(&before, None, Format::Client).await?,
            "events_after": rooms.format_events(&after, None, Format::Client).await?,
            "start": format!("t{start}"),
            "end": format!("t{end}"),
            "state": state,
        }))
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/timestamp_to_event`: the timeline event closest
    /// to `ts` in that direction, 404 when there is none.
    pub async fn admin_timestamp_to_event(
        self,
        room: &RoomId,
        ts: i64,
        backwards: bool,
    ) -> Result<Value> {
        self.known_room(room).await?;
        let (event_id, origin_server_ts) = self
            .db
            .event_near_ts(room.as_str(), ts, !backwards)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Unable to find event from {ts} in direction {}",
                    if backwards { "b" } else { "f" }
                ))
            })?;
        Ok(json!({ "event_id": event_id, "origin_server_ts": origin_server_ts }))
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/hierarchy`: the client hierarchy of a local
    /// room, every room known here shown whatever the admin's memberships.
    pub async fn admin_room_hierarchy(
        self,
        admin: &UserId,
        room: &RoomId,
        req: HierarchyRequest,
    ) -> Result<Value> {
        self.known_room(room).await?;
        self.rooms().server_room_hierarchy(admin, room, req).await
    }

    /// `GET /_synapse/admin/v1/fetch_event/{event_id}`: `{event}` as clients see it (redacted
    /// when redacted); 404 for an event unknown here or rejected.
    pub async fn admin_fetch_event(self, event_id: &str) -> Result<Value> {
        let row = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| !r.is_rejected())
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let ev = self
            .rooms()
            .format_events(&[row], None, Format::Client)
            .await?
            .pop()
            .ok_or_else(|| Error::not_found("Event not found"))?;
        Ok(json!({ "event": ev }))
    }

    /// `POST /_synapse/admin/v1/join/{room_id_or_alias}`: joins a local user to a room known
    /// here. Unless the room's join rule is public, the admin invites the user first (as
    /// Synapse: the admin must be in the room with the power to invite, else 403).
    pub async fn admin_join(
        self,
        admin: &Requester,
        id_or_alias: &str,
        user: &UserId,
    ) -> Result<OwnedRoomId> {
        if !self.is_local(user) {
            return Err(Error::invalid_param(
                "This endpoint can only be used with local users",
            ));
        }
        if self
            .db
            .get_user(user.as_str())
            .await?
            .is_none_or(|u| u.deactivated == 1)
        {
            return Err(Error::not_found("User not found"));
        }
        let room = self.room_or_alias(id_or_alias).await?;
        self.known_room(&room).await?;
        let join_rule = self
            .db
            .current_state_event(room.as_str(), "m.room.join_rules", "")
            .await?
            .and_then(|e| serde_json::from_str::<Value>(&e.json).ok())
            .and_then(|v| v["content"]["join_rule"].as_str().map(str::to_owned));
        if join_rule.is_some_and(|r| r != "public") {
            let current = self.db.membership(user.as_str(), room.as_str()).await?;
            if current.is_none_or(|m| m.membership != "join" && m.membership != "invite") {
                self.rooms()
                    .set_membership(&admin.user_id, &room, user, MemberOp::Invite, None, None)
                    .await?;
            }
        }
        self.rooms()
            .join_room(user, room.as_str(), None, vec![])
            .await
    }

    /// `POST /_synapse/admin/v1/rooms/{room_id_or_alias}/make_room_admin`: gives `user` the
    /// level of the joined local member with the most power, who sends the new power levels
    /// (and invites `user` to a room that is not public when they are neither joined nor
    /// invited). 400 when no local member may change the power levels.
    pub async fn make_room_admin(self, id_or_alias: &str, user: &UserId) -> Result<OwnedRoomId> {
        if !self.is_local(user) {
            return Err(Error::invalid_param(
                "Can only make local users room admins",
            ));
        }
        let room = self.room_or_alias(id_or_alias).await?;
        self.known_room(&room).await?;
        let guard = self.rooms().lock_room(&room).await?;
        let state = guard
            .as_ref()
            .ok_or_else(|| Error::not_found("Room not found"))?;
        let needed = state.state_power("m.room.power_levels");
        let granter = state
            .local_members
            .iter()
            .filter(|u| {
                state.membership(u) == Some(ruma::events::room::member::MembershipState::Join)
            })
            .map(|u| (state.user_power(u), u.clone()))
            .filter(|(p, _)| *p >= needed && *p > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        let Some((level, granter)) = granter else {
            return Err(Error::invalid_param(
                "No local admin user in room with power to update power levels.",
            ));
        };
        let target_membership = state.membership(user);
        let target_is_creator = state.creators().contains(user);
        let pl = state.power_levels();
        let create_sender = state
            .get(ruma::events::StateEventType::RoomCreate, "")
            .map(|p| p.sender.to_string());
        let public = self
            .db
            .current_state_event(room.as_str(), "m.room.join_rules", "")
            .await?
            .and_then(|e| serde_json::from_str::<Value>(&e.json).ok())
            .is_some_and(|v| v["content"]["join_rule"] == "public");
        drop(guard);

        if !target_is_creator {
            let mut content = if pl.is_object() {
                pl
            } else {
                // No power levels yet: the creator keeps their 100.
                let mut users = serde_json::Map::new();
                if let Some(c) = create_sender {
                    users.insert(c, json!(100));
                }
                json!({ "users": users })
            };
            if !content["users"].is_object() {
                content["users"] = json!({});
            }
            // A creator of a v12 room has no level in the map: the target gets the highest one
            // there is (at least 100).
            let level = if level == i64::MAX {
                content["users"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter_map(Value::as_i64)
                    .max()
                    .unwrap_or(100)
                    .max(100)
            } else {
                level
            };
            content["users"][user.as_str()] = json!(level);
            let sender = Requester {
                user_id: granter.clone(),
                device_id: String::new(),
            };
            self.rooms()
                .send_event(
                    &sender,
                    &room,
                    "m.room.power_levels",
                    Some(""),
                    content,
                    None,
                )
                .await
                .map_err(|e| {
                    if e.errcode == "M_FORBIDDEN" {
                        Error::invalid_param(
                            "No local admin user in room with power to update power levels.",
                        )
                    } else {
                        e
                    }
                })?;
        }
        let in_room = matches!(
            target_membership,
            Some(
                ruma::events::room::member::MembershipState::Join
                    | ruma::events::room::member::MembershipState::Invite
            )
        );
        if !in_room && !public {
            self.rooms()
                .set_membership(&granter, &room, user, MemberOp::Invite, None, None)
                .await?;
        }
        Ok(room)
    }

    /// `DELETE /_synapse/admin/v1/rooms/{room_id}/forward_extremities`: removes every forward
    /// extremity but the latest (greatest depth, then stream order), under the room's lock, and
    /// drops the cached room so the next event is built on the one left. `{deleted}`.
    pub async fn delete_forward_extremities(self, room: &RoomId) -> Result<Value> {
        self.known_room(room).await?;
        let mut guard = self.rooms().lock_room(room).await?;
        let rows = self.db.extremities_detail(room.as_str()).await?;
        let others: Vec<String> = rows.into_iter().skip(1).map(|r| r.0).collect();
        let deleted = if others.is_empty() {
            0
        } else {
            self.db.delete_extremities(room.as_str(), &others).await?
        };
        if deleted > 0 {
            self.rooms().forget_room_state(room, &mut guard);
        }
        Ok(json!({ "deleted": deleted }))
    }
}
