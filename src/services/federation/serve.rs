//! Events served to other servers: single events, missing events, the state at an event. A
//! server only gets events of rooms where one of its users is (or was) a member.

use std::collections::HashSet;

use ruma::{RoomId, ServerName};
use serde_json::{json, Value};

use super::sender::outgoing_pdu;
use crate::{services::Services, util, Error, Result};

impl Services {
    /// Whether a server has (or had) a member in the room.
    async fn server_in_room(&self, server: &ServerName, room: &str) -> Result<bool> {
        let members = self.db.room_members(room).await?;
        Ok(members.iter().any(|m| {
            ruma::UserId::parse(m.user_id.as_str()).is_ok_and(|u| u.server_name() == server)
        }))
    }

    pub async fn serve_event(&self, origin: &ServerName, event_id: &str) -> Result<Value> {
        let row = self
            .db
            .get_event(event_id)
            .await?
            .ok_or_else(|| Error::not_found("Event not found"))?;
        if !self.server_in_room(origin, &row.room_id).await? {
            return Err(Error::forbidden("Your server is not in this room"));
        }
        if let Ok(room) = RoomId::parse(&row.room_id) {
            self.check_acl(&room, origin).await?;
        }
        Ok(json!({
            "origin": self.server_name.as_str(),
            "origin_server_ts": util::now_ms(),
            "pdus": [outgoing_pdu(&row.json)],
        }))
    }

    /// Walks prev events back from `latest` (not included) until `earliest`, up to `limit`.
    pub async fn serve_missing_events(
        &self,
        origin: &ServerName,
        room: &RoomId,
        earliest: &[String],
        latest: &[String],
        limit: i64,
    ) -> Result<Value> {
        if !self.server_in_room(origin, room.as_str()).await? {
            return Err(Error::forbidden("Your server is not in this room"));
        }
        self.check_acl(room, origin).await?;
        let limit = limit.clamp(1, 100) as usize;
        let stop: HashSet<&str> = earliest.iter().map(String::as_str).collect();
        let mut seen: HashSet<String> = latest.iter().cloned().collect();
        let mut frontier: Vec<String> = latest.to_vec();
        let mut found = vec![];
        while !frontier.is_empty() && found.len() < limit {
            let prevs: Vec<String> = self
                .db
                .prev_events_of(&frontier)
                .await?
                .into_iter()
                .filter(|p| !stop.contains(p.as_str()) && seen.insert(p.clone()))
                .collect();
            let rows = self.db.get_events(&prevs).await?;
            frontier = rows.iter().map(|r| r.event_id.clone()).collect();
            found.extend(rows.into_iter().filter(|r| r.room_id == room.as_str()));
        }
        found.sort_by_key(|r| r.stream_ordering);
        let skip = found.len().saturating_sub(limit);
        let events: Vec<Value> = found[skip..]
            .iter()
            .map(|r| outgoing_pdu(&r.json))
            .collect();
        Ok(json!({ "events": events }))
    }

    /// The state before an event (after its prev events) and its auth chain.
    pub async fn serve_state(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &str,
        ids_only: bool,
    ) -> Result<Value> {
        if !self.server_in_room(origin, room.as_str()).await? {
            return Err(Error::forbidden("Your server is not in this room"));
        }
        self.check_acl(room, origin).await?;
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
        let mut ids: Vec<String> = states.values().flat_map(|s| s.values().cloned()).collect();
        ids.sort();
        ids.dedup();
        let chain = self.db.auth_chain(&ids).await?;
        if ids_only {
            return Ok(json!({
                "pdu_ids": ids,
                "auth_chain_ids": chain.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(),
            }));
        }
        let pdus = self.db.get_events(&ids).await?;
        Ok(json!({
            "pdus": pdus.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
            "auth_chain": chain.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
        }))
    }
}
