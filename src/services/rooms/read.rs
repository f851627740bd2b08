//! Reading rooms: single events, state, members, /messages and /context, all through history
//! visibility.

use crate::services::rooms::RoomsFace;
use std::collections::HashSet;

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::client_event::Format;
use crate::{
    services::{filter::RoomEventFilter, streams::parse_position},
    store::events::{Dir, EventRow},
    Error, Result,
};

/// The state a user may read: the current state while joined, else the state when they left.
enum StateView {
    Current,
    AtGroup(i64),
}

/// Whether a stored event may be shown to `user` at all, before history visibility: never a
/// rejected or soft-failed event (kept for the DAG, refused by the room), and never an outlier
/// (known only as some event's auth or state, with no place in the timeline) except the user's
/// own membership received out of band (an invite, a knock, their rejection), as Synapse does.
fn servable(row: &EventRow, user: &UserId) -> bool {
    if row.is_rejected() || row.is_soft_failed() {
        return false;
    }
    !row.is_outlier()
        || (row.kind == "m.room.member" && row.state_key.as_deref() == Some(user.as_str()))
}

impl RoomsFace<'_> {
    async fn state_view(self, user: &UserId, room_id: &RoomId) -> Result<StateView> {
        let m = self.db.membership(user.as_str(), room_id.as_str()).await?;
        match m {
            Some(m) if m.membership == "join" => Ok(StateView::Current),
            Some(m) if m.membership == "leave" || m.membership == "ban" => {
                let ev = self
                    .db
                    .get_event(&m.event_id)
                    .await?
                    .ok_or_else(|| Error::forbidden("Not in room"))?;
                Ok(StateView::AtGroup(ev.state_group.unwrap_or(0)))
            }
            _ => {
                // world_readable rooms can be read by anyone on this server.
                let hv = self
                    .db
                    .current_state_event(room_id.as_str(), "m.room.history_visibility", "")
                    .await?;
                if hv.is_some_and(|e| {
                    super::visibility::history_visibility(&e.json).as_deref()
                        == Some("world_readable")
                }) {
                    return Ok(StateView::Current);
                }
                Err(Error::forbidden("You are not in this room"))
            }
        }
    }

    /// `GET /_matrix/client/v1/rooms/{id}/timestamp_to_event`: the timeline event closest to
    /// `ts` in that direction that this server has, for a user who may read the room (joined,
    /// once a member, or the room is world-readable); 404 when there is none. (The event itself
    /// is then read with its visibility rules, through `/context` or `/event`.)
    pub async fn timestamp_to_event(
        self,
        user: &UserId,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<Value> {
        self.state_view(user, room_id).await?;
        let (event_id, origin_server_ts) = self
            .db
            .event_near_ts(room_id.as_str(), ts, forward)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Unable to find event from {ts} in direction {}",
                    if forward { "f" } else { "b" }
                ))
            })?;
        Ok(json!({ "event_id": event_id, "origin_server_ts": origin_server_ts }))
    }

    /// State events the user may see, optionally only some types.
    async fn visible_state(self, user: &UserId, room_id: &RoomId) -> Result<Vec<EventRow>> {
        match self.state_view(user, room_id).await? {
            StateView::Current => Ok(self
                .db
                .current_state_events(&[room_id.to_string()], None)
                .await?),
            StateView::AtGroup(g) => {
                let states = self.db.state_at_groups(&[g], None).await?;
                let ids: Vec<String> = states
                    .get(&g)
                    .map(|s| s.values().cloned().collect())
                    .unwrap_or_default();
                Ok(self.db.get_events(&ids).await?)
            }
        }
    }

    pub async fn room_state(self, user: &UserId, room_id: &RoomId) -> Result<Vec<Value>> {
        let rows = self.visible_state(user, room_id).await?;
        self.format_events(&rows, None, Format::Client).await
    }

    /// The room's whole current state in client format, whoever may see it (the admin API).
    pub async fn full_state(self, room_id: &RoomId) -> Result<Vec<Value>> {
        let rows = self
            .db
            .current_state_events(&[room_id.to_string()], None)
            .await?;
        self.format_events(&rows, None, Format::Client).await
    }

    /// `GET /rooms/{id}/state/{type}/{key}`: the event's content, or (`whole`, spec v1.16
    /// `?format=event`) the whole client event.
    pub async fn room_state_event(
        self,
        user: &UserId,
        room_id: &RoomId,
        kind: &str,
        key: &str,
        whole: bool,
    ) -> Result<Value> {
        let row = match self.state_view(user, room_id).await? {
            StateView::Current => {
                self.db
                    .current_state_event(room_id.as_str(), kind, key)
                    .await?
            }
            StateView::AtGroup(g) => {
                let states = self.db.state_at_groups(&[g], Some(&[(kind, key)])).await?;
                match states.get(&g).and_then(|s| s.values().next().cloned()) {
                    Some(id) => self.db.get_event(&id).await?,
                    None => None,
                }
            }
        };
        let row = row.ok_or_else(|| Error::not_found("Event not found"))?;
        let mut ev = self.format_events(&[row], None, Format::Client).await?;
        let Some(mut ev) = ev.pop() else {
            return Ok(json!({}));
        };
        if whole {
            return Ok(ev);
        }
        Ok(ev.get_mut("content").map(Value::take).unwrap_or(json!({})))
    }

    pub async fn room_members(
        self,
        user: &UserId,
        room_id: &RoomId,
        membership: Option<&str>,
        not_membership: Option<&str>,
    ) -> Result<Vec<Value>> {
        let rows: Vec<EventRow> = self
            .visible_state(user, room_id)
            .await?
            .into_iter()
            .filter(|r| r.kind == "m.room.member")
            .collect();
        let events = self.format_events(&rows, None, Format::Client).await?;
        Ok(events
            .into_iter()
            .filter(|e| {
                let m = e["content"]["membership"].as_str().unwrap_or("");
                membership.is_none_or(|x| x == m) && not_membership.is_none_or(|x| x != m)
            })
            .collect())
    }

    pub async fn joined_members(self, user: &UserId, room_id: &RoomId) -> Result<Value> {
        if !matches!(self.state_view(user, room_id).await?, StateView::Current) {
            return Err(Error::forbidden("You are not in this room"));
        }
        let members = self.room_members(user, room_id, Some("join"), None).await?;
        let mut joined = serde_json::Map::new();
        for m in members {
            let Some(uid) = m["state_key"].as_str() else {
                continue;
            };
            joined.insert(
                uid.to_owned(),
                json!({ "display_name": m["content"]["displayname"], "avatar_url": m["content"]["avatar_url"] }),
            );
        }
        Ok(json!({ "joined": joined }))
    }

    pub async fn get_room_event(
        self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        event_id: &str,
    ) -> Result<Value> {
        let row = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room_id.as_str() && servable(r, user));
        let row = row.ok_or_else(|| Error::not_found("Event not found"))?;
        let mut visible = self.filter_visible(user, vec![row]).await?;
        let row = visible
            .pop()
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let mut out = self
            .format_events(&[row], Some((user, device)), Format::Client)
            .await?;
        out.pop().ok_or_else(|| Error::not_found("Event not found"))
    }

    /// Member events of the senders of `events` (lazy-loading members).
    /// Member events of the senders of `events` (lazy-loading members), as the user may see
    /// them: the current ones while joined, the ones at their leave otherwise.
    async fn members_for(
        self,
        user: &UserId,
        room_id: &RoomId,
        events: &[EventRow],
    ) -> Result<Vec<EventRow>> {
        let senders: HashSet<&str> = events.iter().map(|e| e.sender.as_str()).collect();
        match self.state_view(user, room_id).await? {
            StateView::Current => {
                let senders: Vec<String> = senders.into_iter().map(str::to_owned).collect();
                Ok(self
                    .db
                    .current_members(&[room_id.to_string()], &senders)
                    .await?)
            }
            StateView::AtGroup(g) => {
                let keys: Vec<(&str, &str)> =
                    senders.iter().map(|u| ("m.room.member", *u)).collect();
                let states = self.db.state_at_groups(&[g], Some(&keys)).await?;
                let ids: Vec<String> = states
                    .get(&g)
                    .map(|s| s.values().cloned().collect())
                    .unwrap_or_default();
                Ok(self.db.get_events(&ids).await?)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn messages(
        self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        from: Option<&str>,
        to: Option<&str>,
        dir: Dir,
        limit: i64,
        filter: &RoomEventFilter,
    ) -> Result<Value> {
        let membership = self.db.membership(user.as_str(), room_id.as_str()).await?;
        if membership.is_none() {
            self.state_view(user, room_id).await?;
        }
        let limit = limit.clamp(1, 1000);
        let from_pos = match from {
            Some(t) => parse_position(t)?,
            None => match dir {
                Dir::Backward => self.events_stream.current(),
                // Backfilled events have negative positions.
                Dir::Forward => i64::MIN,
            },
        };
        // Never show what happened after the user left.
        let cap = match &membership {
            Some(m) if m.membership == "leave" || m.membership == "ban" => m.stream_ordering,
            _ => i64::MAX,
        };
        let to_pos = to.map(parse_position).transpose()?;
        let rows = match dir {
            // A token is the position after an event: backward from T includes T.
            Dir::Backward => {
                let from = from_pos.min(cap).saturating_add(1);
                let mut rows = self
                    .db
                    .room_events(room_id.as_str(), from, to_pos, dir, limit)
                    .await?;
                // Out of events here before the room's start: ask a server of the room for
                // older ones (room joined over federation), then read again.
                if (rows.len() as i64) < limit && to_pos.is_none() {
                    match self.backfill_room(room_id).await {
                        Ok(true) => {
                            rows = self
                                .db
                                .room_events(room_id.as_str(), from, to_pos, dir, limit)
                                .await?
                        }
                        Ok(false) => {}
                        Err(e) => tracing::info!(%room_id, error = %e.message, "backfill failed"),
                    }
                }
                rows
            }
            Dir::Forward => {
                let upper = to_pos
                    .map(|t| t.saturating_add(1))
                    .unwrap_or(i64::MAX)
                    .min(cap.saturating_add(1));
                self.db
                    .room_events(room_id.as_str(), from_pos, Some(upper), dir, limit)
                    .await?
            }
        };
        // `end` only when more events may follow in that direction.
        let end = match rows.last() {
            Some(last) if rows.len() as i64 == limit => Some(match dir {
                Dir::Backward => last.stream_ordering - 1,
                Dir::Forward => last.stream_ordering,
            }),
            _ => None,
        };
        let rows: Vec<EventRow> = self
            .filter_visible(user, rows)
            .await?
            .into_iter()
            .filter(|r| filter.allows(r))
            .collect();
        let mut out = json!({
            "start": format!("t{from_pos}"),
            "chunk": self.format_events(&rows, Some((user, device)), Format::Client).await?,
        });
        if let Some(e) = end {
            out["end"] = json!(format!("t{e}"));
        }
        if filter.lazy_load_members {
            let members = self.members_for(user, room_id, &rows).await?;
            out["state"] = json!(self.format_events(&members, None, Format::Client).await?);
        }
        Ok(out)
    }

    pub async fn context(
        self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        event_id: &str,
        limit: i64,
        filter: &RoomEventFilter,
    ) -> Result<Value> {
        // An outlier has no place in the timeline to give context around, not even the
        // user's own out-of-band membership.
        let row = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room_id.as_str() && servable(r, user) && !r.is_outlier());
        let row = row.ok_or_else(|| Error::not_found("Event not found"))?;
        let visible = self.filter_visible(user, vec![row.clone()]).await?;
        if visible.is_empty() {
            return Err(Error::not_found("Event not found"));
        }
        let limit = limit.clamp(0, 100);
        let before_n = limit / 2;
        let after_n = limit - before_n;
        let pos = row.stream_ordering;
        let before = if before_n > 0 {
            self.db
                .room_events(room_id.as_str(), pos, None, Dir::Backward, before_n)
                .await?
        } else {
            vec![]
        };
        let after = if after_n > 0 {
            self.db
                .room_events(room_id.as_str(), pos, None, Dir::Forward, after_n)
                .await?
        } else {
            vec![]
        };
        let start = before
            .last()
            .map(|r| r.stream_ordering.saturating_sub(1))
            .unwrap_or(pos.saturating_sub(1));
        let end = after.last().map(|r| r.stream_ordering).unwrap_or(pos);
        let before: Vec<EventRow> = self
            .filter_visible(user, before)
            .await?
            .into_iter()
            .filter(|r| filter.allows(r))
            .collect();
        let after: Vec<EventRow> = self
            .filter_visible(user, after)
            .await?
            .into_iter()
            .filter(|r| filter.allows(r))
            .collect();
        let state = match self.state_view(user, room_id).await {
            Ok(_) => {
                let mut all = before.clone();
                all.push(row.clone());
                all.extend(after.iter().cloned());
                let rows = if filter.lazy_load_members {
                    self.members_for(user, room_id, &all).await?
                } else {
                    self.visible_state(user, room_id).await?
                };
                self.format_events(&rows, None, Format::Client).await?
            }
            Err(_) => vec![],
        };
        let viewer = Some((user, device));
        Ok(json!({
            "event": self.format_events(&[row], viewer, Format::Client).await?.pop(),
            "events_before": self.format_events(&before, viewer, Format::Client).await?,
            "events_after": self.format_events(&after, viewer, Format::Client).await?,
            "start": format!("t{start}"),
            "end": format!("t{end}"),
            "state": state,
        }))
    }
}
