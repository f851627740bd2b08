//! `/sync` (v2): initial and incremental, long-polling on the notifier. The cost of an
//! incremental sync follows what changed: a fixed number of queries whatever the number of rooms.

crate::services::face!(
    /// The face of sync and what it delivers besides room events.
    SyncFace
);

pub mod account_data;
pub mod ignored;
mod once;
pub mod presence;
pub mod receipts;
pub mod sliding;
pub mod tags;
pub mod typing;

use std::{collections::HashMap, time::Duration};

use ruma::UserId;
use serde_json::{json, Map, Value};

use crate::services::streams::SyncToken;
use crate::services::{filter::Filter, requester::Requester, rooms::client_event::Format};
use crate::{store::events::EventRow, Result};

/// Default number of timeline events per room.
const DEFAULT_TIMELINE_LIMIT: i64 = 10;
/// Longest long-poll honoured.
const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Rooms with more members than this get no heroes in their summary.
const HEROES_MAX_ROOM: i64 = 20;

pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout_ms: u64,
    pub full_state: bool,
    pub filter: Filter,
    /// `set_presence`: online (default), unavailable or offline (do not change).
    pub set_presence: Option<String>,
}

impl SyncFace<'_> {
    /// The position of every stream now, never behind `since`: a token from another node of
    /// a cluster may be ahead of this one for a moment (what lies between was delivered there;
    /// going back would deliver it twice).
    fn current_token_after(self, since: Option<&SyncToken>) -> SyncToken {
        let cur = self.current_token();
        since.map_or(cur, |s| cur.at_least(s))
    }

    /// The position of every stream now.
    fn current_token(self) -> SyncToken {
        SyncToken {
            events: self.events_stream.current(),
            account_data: self.account_data_stream.current(),
            presence: self.presence.current(),
            to_device: self.to_device_stream.current(),
            device_lists: self.device_list_stream.current(),
            receipts: self.receipt_stream.current(),
            typing: self.typing.current(),
        }
    }

    pub async fn sync_v2(self, r: &Requester, req: SyncRequest) -> Result<Value> {
        let since = req.since.as_deref().map(SyncToken::parse).transpose()?;
        let handle = self.notifier.handle(&r.user_id);
        let set_presence = req.set_presence.as_deref().unwrap_or("online");
        if set_presence != "offline" {
            self.set_presence(&r.user_id, set_presence, None).await?;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.min(MAX_TIMEOUT_MS));
        loop {
            let notified = handle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let cur = self.current_token_after(since.as_ref());
            // A node that stops answers at once (its load balancer sends the next poll
            // elsewhere).
            let waiting_allowed = since.is_some()
                && !req.full_state
                && tokio::time::Instant::now() < deadline
                && !self.health.draining();
            if waiting_allowed && since == Some(cur) {
                let _waiting = self.metrics.long_poll();
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return self.empty_response(r, cur).await;
                }
                continue;
            }
            let (resp, empty) = self.sync_once(r, since, cur, &req).await?;
            if empty && waiting_allowed {
                let waiting = self.metrics.long_poll();
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    drop(waiting);
                    // Nothing for this user up to now: hand back the newest position.
                    let cur = self.current_token_after(since.as_ref());
                    let (resp, _) = self.sync_once(r, since, cur, &req).await?;
                    return Ok(resp);
                }
                continue;
            }
            return Ok(resp);
        }
    }

    /// `rooms.invite` / `rooms.knock`: for each membership, the room's stripped state (its
    /// current state when known here, else what was kept with an out-of-band invite or knock)
    /// and the membership event itself, whole.
    async fn stripped_sections(
        self,
        memberships: &[crate::store::rooms::MembershipRow],
        field: &str,
    ) -> Result<Map<String, Value>> {
        let mut out = Map::new();
        if memberships.is_empty() {
            return Ok(out);
        }
        let rooms: Vec<String> = memberships.iter().map(|m| m.room_id.clone()).collect();
        let member_ids: Vec<String> = memberships.iter().map(|m| m.event_id.clone()).collect();
        let rows = self
            .db
            .current_state_events(&rooms, Some(crate::services::federation::STRIPPED_TYPES))
            .await?;
        let stripped = self
            .rooms()
            .format_events(&rows, None, Format::Stripped)
            .await?;
        let mut per_room: HashMap<String, Vec<Value>> = HashMap::new();
        for (row, ev) in rows.iter().zip(stripped) {
            per_room.entry(row.room_id.clone()).or_default().push(ev);
        }
        let kept: HashMap<String, Vec<Value>> = self
            .db
            .remote_memberships(&member_ids)
            .await?
            .into_iter()
            .map(|r| {
                let v: Vec<Value> = serde_json::from_str(&r.stripped_state).unwrap_or_default();
                (r.room_id, v)
            })
            .collect();
        let members = self.db.get_events(&member_ids).await?;
        let formatted = self
            .rooms()
            .format_events(&members, None, Format::Client)
            .await?;
        let mut member_events: HashMap<String, Value> = members
            .iter()
            .zip(formatted)
            .map(|(r, v)| (r.room_id.clone(), v))
            .collect();
        for m in memberships {
            let mut events = match per_room.remove(&m.room_id) {
                Some(evs) => evs,
                None => kept.get(&m.room_id).cloned().unwrap_or_default(),
            };
            // The membership event is sent whole (clients read its unsigned data and event id).
            events.retain(|e| {
                !(e["type"] == "m.room.member" && e["state_key"] == m.user_id.as_str())
            });
            if let Some(ev) = member_events.remove(&m.room_id) {
                events.push(ev);
            }
            out.insert(m.room_id.clone(), json!({ field: { "events": events } }));
        }
        Ok(out)
    }

    async fn room_sections(
        self,
        events: &[EventRow],
        state: &[EventRow],
        limited: bool,
        lower: i64,
        viewer: Option<(&UserId, &str)>,
        aggregations: &HashMap<String, Value>,
    ) -> Result<Value> {
        let prev_batch = events
            .first()
            .map(|e| e.stream_ordering - 1)
            .unwrap_or(lower);
        Ok(json!({
            "timeline": {
                "events": self.rooms().format_plain(events, viewer, Format::Client, aggregations).await?,
                "limited": limited,
                "prev_batch": format!("t{prev_batch}"),
            },
            "state": { "events": self.rooms().format_plain(state, None, Format::Client, &HashMap::new()).await? },
        }))
    }

    /// `m.joined_member_count`, `m.invited_member_count`, and heroes for small rooms.
    async fn summaries(self, user: &UserId, rooms: &[String]) -> Result<HashMap<String, Value>> {
        let mut out: HashMap<String, Value> = HashMap::new();
        let mut small = vec![];
        let mut totals: HashMap<String, i64> = HashMap::new();
        for (room, membership, count) in self.db.member_counts(rooms).await? {
            let s = out.entry(room.clone()).or_insert_with(
                || json!({ "m.joined_member_count": 0, "m.invited_member_count": 0 }),
            );
            let key = if membership == "join" {
                "m.joined_member_count"
            } else {
                "m.invited_member_count"
            };
            s[key] = json!(count);
            *totals.entry(room).or_default() += count;
        }
        for (room, total) in totals {
            if total <= HEROES_MAX_ROOM {
                small.push(room);
            }
        }
        let mut heroes: HashMap<String, Vec<String>> = HashMap::new();
        for (room, member) in self.db.members_of(&small).await? {
            if member != user.as_str() {
                let h = heroes.entry(room).or_default();
                if h.len() < 5 {
                    h.push(member);
                }
            }
        }
        for (room, h) in heroes {
            if let Some(s) = out.get_mut(&room) {
                s["m.heroes"] = json!(h);
            }
        }
        Ok(out)
    }
}

impl SyncFace<'_> {
    /// A long-poll that timed out with nothing new: the position and the key counts.
    async fn empty_response(self, r: &Requester, cur: SyncToken) -> Result<Value> {
        let (otk_counts, fallback_types) = self.e2ee().key_counts(&r.user_id, &r.device_id).await?;
        Ok(json!({
            "next_batch": cur.to_string(),
            "rooms": { "join": {}, "invite": {}, "leave": {}, "knock": {} },
            "account_data": { "events": [] },
            "to_device": { "events": [] },
            "device_lists": { "changed": [], "left": [] },
            "device_one_time_keys_count": otk_counts,
            "device_unused_fallback_key_types": fallback_types,
        }))
    }
}
