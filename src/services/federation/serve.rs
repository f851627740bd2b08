//! Events served to other servers: single events, missing events, the state at an event, auth
//! chains, backfill, the event closest to a time.
//!
//! Every room endpoint checks the room's server ACL, and that the asking server has a user
//! joined to the room (or that the room is world-readable). Events themselves go through
//! history visibility as Synapse does (`filter_events_for_server`): an event is visible to a
//! server when the history visibility at the event is `shared` or `world_readable`, or when one
//! of the server's users was joined (or, for `invited`, invited) at that event. Hidden events are
//! served redacted by `/event` and `/backfill`, and left out of `/get_missing_events`.

use crate::services::federation::FederationFace;
use std::collections::{HashMap, HashSet};

use ruma::{canonical_json::redact, CanonicalJsonValue, RoomId, ServerName};
use serde_json::{json, Value};

use super::sender::outgoing_pdu;
use crate::{store::events::EventRow, util, Error, Result};

/// Most events a `/backfill` answers.
pub const MAX_BACKFILL: i64 = 100;
/// Most starting events accepted by `/backfill` (`v`) and `/get_missing_events`.
pub const MAX_FROM_EVENTS: usize = 20;
/// Above this many users of the asking server in a room, visibility reads the whole state at
/// each event instead of naming each user's membership.
const MAX_NAMED_MEMBERS: usize = 200;

/// Hidden events are either withheld or served redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hidden {
    Withhold,
    Redact,
}

impl FederationFace<'_> {
    /// Refuses a server banned by the room's ACL, or with no user joined to the room (unless
    /// the room is world-readable). Unknown rooms are 404.
    pub(super) async fn check_server_reads(self, origin: &ServerName, room: &RoomId) -> Result<()> {
        if self.db.room_version(room.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        self.check_acl(room, origin).await?;
        if self
            .db
            .server_joined(room.as_str(), origin.as_str())
            .await?
        {
            return Ok(());
        }
        let hv = self
            .db
            .current_state_event(room.as_str(), "m.room.history_visibility", "")
            .await?;
        let world_readable = hv
            .and_then(|e| serde_json::from_str::<Value>(&e.json).ok())
            .is_some_and(|v| v["content"]["history_visibility"] == "world_readable");
        if world_readable {
            return Ok(());
        }
        Err(Error::forbidden("Your server is not in this room"))
    }

    /// For each event of `room` in `rows`, whether `server` may see it.
    async fn visible_to_server(
        self,
        server: &ServerName,
        room: &str,
        rows: &[EventRow],
    ) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let users: Vec<String> = self
            .db
            .server_members(&[room.to_owned()], server.as_str())
            .await?
            .into_iter()
            .map(|(_, u, _)| u)
            .collect();
        let mut groups: Vec<i64> = rows.iter().filter_map(|r| r.state_group).collect();
        groups.sort_unstable();
        groups.dedup();
        let mut keys: Vec<(&str, &str)> = vec![("m.room.history_visibility", "")];
        keys.extend(users.iter().map(|u| ("m.room.member", u.as_str())));
        let only = (users.len() <= MAX_NAMED_MEMBERS).then_some(keys.as_slice());
        let states = self.db.state_at_groups(&groups, only).await?;
        let users: HashSet<&str> = users.iter().map(String::as_str).collect();
        // The contents of the events that matter: history visibility and the server's members.
        let mut ids: Vec<String> = states
            .values()
            .flat_map(|s| {
                s.iter()
                    .filter(|((t, k), _)| {
                        t == "m.room.history_visibility"
                            || (t == "m.room.member" && users.contains(k.as_str()))
                    })
                    .map(|(_, id)| id.clone())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let contents: HashMap<String, Value> = self
            .db
            .get_events_chunked(&ids)
            .await?
            .into_iter()
            .filter_map(|r| {
                let v: Value = serde_json::from_str(&r.json).ok()?;
                Some((r.event_id, v["content"].clone()))
            })
            .collect();
        Ok(rows
            .iter()
            .map(|r| {
                let Some(state) = r.state_group.and_then(|g| states.get(&g)) else {
                    // No known state at the event (an outlier): shared by default.
                    return true;
                };
                let hv = state
                    .get(&("m.room.history_visibility".to_owned(), String::new()))
                    .and_then(|id| contents.get(id))
                    .and_then(|c| c["history_visibility"].as_str())
                    .unwrap_or("shared");
                if hv != "invited" && hv != "joined" {
                    return true;
                }
                state
                    .iter()
                    .filter(|((t, k), _)| t == "m.room.member" && users.contains(k.as_str()))
                    .filter_map(|(_, id)| contents.get(id)?["membership"].as_str())
                    .any(|m| m == "join" || (m == "invite" && hv == "invited"))
            })
            .collect())
    }

    /// The events `server` gets out of `rows` (all of one room): visible ones as stored,
    /// hidden ones redacted or left out.
    async fn pdus_for_server(
        self,
        server: &ServerName,
        room: &str,
        rows: &[EventRow],
        hidden: Hidden,
    ) -> Result<Vec<Value>> {
        let visible = self.visible_to_server(server, room, rows).await?;
        let rules = if visible.iter().all(|v| *v) {
            None
        } else {
            Some(self.rooms().room_rules(room).await?)
        };
        let mut out = Vec::with_capacity(rows.len());
        for (r, ok) in rows.iter().zip(visible) {
            let pdu = outgoing_pdu(&r.json);
            if ok {
                out.push(pdu);
                continue;
            }
            if hidden == Hidden::Withhold {
                continue;
            }
            let (Some(rules), Ok(CanonicalJsonValue::Object(obj))) =
                (&rules, CanonicalJsonValue::try_from(pdu))
            else {
                continue;
            };
            if let Ok(red) = redact(obj, &rules.redaction, None) {
                out.push(serde_json::to_value(red)?);
            }
        }
        Ok(out)
    }

    pub async fn serve_event(self, origin: &ServerName, event_id: &str) -> Result<Value> {
        let row = self
            .db
            .get_event(event_id)
            .await?
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let room = RoomId::parse(&row.room_id).map_err(|_| Error::not_found("Event not found"))?;
        self.check_server_reads(origin, &room).await?;
        let pdus = self
            .pdus_for_server(origin, room.as_str(), &[row], Hidden::Redact)
            .await?;
        Ok(json!({
            "origin": self.server_name.as_str(),
            "origin_server_ts": util::now_ms(),
            "pdus": pdus,
        }))
    }

    /// Walks prev events back from `latest` (not included) until `earliest`, up to `limit`,
    /// within `room`.
    pub async fn serve_missing_events(
        self,
        origin: &ServerName,
        room: &RoomId,
        earliest: &[String],
        latest: &[String],
        limit: i64,
    ) -> Result<Value> {
        self.check_server_reads(origin, room).await?;
        if latest.len() > MAX_FROM_EVENTS || earliest.len() > 100 {
            return Err(Error::invalid_param("Too many events named"));
        }
        let limit = limit.clamp(1, 100) as usize;
        let stop: HashSet<&str> = earliest.iter().map(String::as_str).collect();
        // The walk starts from, and goes through, events of this room only: an event id of
        // another room (named by the asker, or reached through an edge a forged PDU created)
        // is a dead end, never a way into that room's DAG.
        let in_room = |rows: Vec<EventRow>| -> Vec<EventRow> {
            rows.into_iter()
                .filter(|r| r.room_id == room.as_str())
                .collect()
        };
        let mut frontier: Vec<String> = in_room(self.db.get_events(latest).await?)
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        let mut seen: HashSet<String> = frontier.iter().cloned().collect();
        let mut found = vec![];
        // Each round adds every event it reaches to `found`: at most `limit` rounds.
        while !frontier.is_empty() && found.len() < limit {
            let prevs: Vec<String> = self
                .db
                .prev_events_of(&frontier)
                .await?
                .into_iter()
                .filter(|p| !stop.contains(p.as_str()) && seen.insert(p.clone()))
                .collect();
            let rows = in_room(self.db.get_events(&prevs).await?);
            frontier = rows.iter().map(|r| r.event_id.clone()).collect();
            found.extend(rows);
        }
        found.sort_by_key(|r| r.stream_ordering);
        let skip = found.len().saturating_sub(limit);
        let events = self
            .pdus_for_server(origin, room.as_str(), &found[skip..], Hidden::Withhold)
            .await?;
        Ok(json!({ "events": events }))
    }

    /// The state before an event (after its prev events) and its auth chain.
    pub async fn serve_state(
        self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &str,
        ids_only: bool,
    ) -> Result<Value> {
        self.check_server_reads(origin, room).await?;
        let event = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room.as_str())
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let prevs = self
            .db
            .prev_events_of(std::slice::from_ref(&event.event_id))
            .await?;
        let groups: Vec<i64> = self
            .db
            .get_events(&prevs)
            .await?
            .iter()
            .filter_map(|r| r.state_group)
            .collect();
        let states = self.db.state_at_groups(&groups, None).await?;
        // Several prev events: the state resolved as this server did when it took the event
        // is the state after it minus the event itself; resolve the prev states the same way.
        let mut ids: Vec<String> = if states.len() > 1 {
            let rules = self.rooms().room_rules(room.as_str()).await?;
            let groups: Vec<i64> = states.keys().copied().collect();
            let loaded = self.rooms().states_of_groups(&groups).await?;
            let all: Vec<&crate::services::rooms::state::State> = loaded.values().collect();
            self.rooms()
                .resolve_states(&rules, &all)
                .await?
                .values()
                .map(|p| p.event_id.to_string())
                .collect()
        } else {
            states.values().flat_map(|s| s.values().cloned()).collect()
        };
        ids.sort();
        ids.dedup();
        let chain = self.db.auth_chain(&ids).await?;
        if ids_only {
            return Ok(json!({
                "pdu_ids": ids,
                "auth_chain_ids": chain.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
            }));
        }
        let pdus = self.db.get_events_chunked(&ids).await?;
        Ok(json!({
            "pdus": pdus.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
            "auth_chain": chain.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
        }))
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the whole auth chain of an event of the room.
    pub async fn serve_event_auth(
        self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &str,
    ) -> Result<Value> {
        self.check_server_reads(origin, room).await?;
        let event = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room.as_str())
            .ok_or_else(|| Error::not_found("Event not found"))?;
        let is_create = event.kind == "m.room.create";
        let mut chain = self.db.auth_chain(&[event.event_id]).await?;
        // From room version 12 the create event is named by the room id, not the auth events:
        // it is still part of every auth chain.
        if !is_create && !chain.iter().any(|r| r.kind == "m.room.create") {
            if let Some(create) = self
                .db
                .current_state_event(room.as_str(), "m.room.create", "")
                .await?
            {
                chain.insert(0, create);
            }
        }
        Ok(json!({
            "auth_chain": chain.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
        }))
    }

    /// `GET /backfill/{roomId}?v=…&limit=…`: the events before (and including) `from`, deepest
    /// first, at most `limit` (≤ 100).
    pub async fn serve_backfill(
        self,
        origin: &ServerName,
        room: &RoomId,
        from: &[String],
        limit: i64,
    ) -> Result<Value> {
        self.check_server_reads(origin, room).await?;
        if from.is_empty() {
            return Err(Error::invalid_param("v: at least one event id is needed"));
        }
        if from.len() > MAX_FROM_EVENTS {
            return Err(Error::invalid_param("v: too many events"));
        }
        let limit = limit.clamp(1, MAX_BACKFILL);
        let rows = self.db.backfill_walk(room.as_str(), from, limit).await?;
        let pdus = self
            .pdus_for_server(origin, room.as_str(), &rows, Hidden::Redact)
            .await?;
        Ok(json!({
            "origin": self.server_name.as_str(),
            "origin_server_ts": util::now_ms(),
            "pdus": pdus,
        }))
    }

    /// `GET /timestamp_to_event/{roomId}?ts=…&dir=f|b`: the event closest to `ts` in that
    /// direction that this server has in the room's timeline.
    pub async fn serve_timestamp_to_event(
        self,
        origin: &ServerName,
        room: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<Value> {
        self.check_server_reads(origin, room).await?;
        let (event_id, ts) = self
            .db
            .event_near_ts(room.as_str(), ts, forward)
            .await?
            .ok_or_else(|| Error::not_found("No event found in that direction"))?;
        Ok(json!({ "event_id": event_id, "origin_server_ts": ts }))
    }
}
