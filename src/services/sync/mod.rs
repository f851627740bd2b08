//! `/sync` (v2): initial and incremental, long-polling on the notifier. The cost of an
//! incremental sync follows what changed: a fixed number of queries whatever the number of rooms.

crate::services::face!(
    /// The face of sync and what it delivers besides room events.
    SyncFace
);

pub mod account_data;
pub mod presence;
pub mod receipts;
pub mod tags;
pub mod typing;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use ruma::UserId;
use serde_json::{json, Map, Value};

use crate::services::streams::SyncToken;
use crate::services::{
    e2ee::{RoomsSeen, Window},
    filter::Filter,
    requester::Requester,
    rooms::client_event::Format,
};
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
            let cur = self.current_token();
            let waiting_allowed =
                since.is_some() && !req.full_state && tokio::time::Instant::now() < deadline;
            if waiting_allowed && since == Some(cur) {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return self.empty_response(r, cur).await;
                }
                continue;
            }
            let (resp, empty) = self.sync_once(r, since, cur, &req).await?;
            if empty && waiting_allowed {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    // Nothing for this user up to now: hand back the newest position.
                    let cur = self.current_token();
                    let (resp, _) = self.sync_once(r, since, cur, &req).await?;
                    return Ok(resp);
                }
                continue;
            }
            return Ok(resp);
        }
    }

    async fn sync_once(
        self,
        r: &Requester,
        since: Option<SyncToken>,
        cur: SyncToken,
        req: &SyncRequest,
    ) -> Result<(Value, bool)> {
        let user: &UserId = &r.user_id;
        let viewer = Some((user, r.device_id.as_str()));
        let rf = &req.filter.room;
        let limit = rf.timeline.limit_or(DEFAULT_TIMELINE_LIMIT);
        let memberships = self.db.user_memberships(user.as_str()).await?;
        let since_ev = since.map(|s| s.events);
        let changed = |stream: i64| since_ev.is_none_or(|s| stream > s && stream <= cur.events);

        // The membership each row replaced (from the member event's unsigned prev_content), for
        // rows that changed since the last sync or are newer than this sync's position: a
        // join -> join (profile change) is not a new join, and a change past `cur` is judged by
        // the membership it replaced.
        let rechecked: Vec<String> = memberships
            .iter()
            .filter(|m| {
                m.stream_ordering > cur.events
                    || (since.is_some() && m.membership == "join" && changed(m.stream_ordering))
            })
            .map(|m| m.event_id.clone())
            .collect();
        let previous: HashMap<String, String> = self
            .db
            .get_events(&rechecked)
            .await?
            .into_iter()
            .filter_map(|e| {
                let v: Value = serde_json::from_str(&e.json).ok()?;
                let prev = v["unsigned"]["prev_content"]["membership"]
                    .as_str()?
                    .to_owned();
                Some((e.event_id, prev))
            })
            .collect();

        let mut full_rooms = vec![]; // newly joined: complete state, timeline from the start
        let mut incr_rooms = vec![]; // joined before: what changed since
        let mut invites = vec![];
        let mut knocks = vec![];
        let mut left = vec![];
        for m in &memberships {
            if !rf.allows_room(&m.room_id) {
                continue;
            }
            let prev = previous.get(&m.event_id).map(String::as_str);
            if m.stream_ordering > cur.events {
                // Not readable yet: as of `cur` the user still had the previous membership.
                if prev == Some("join") && since.is_some() {
                    incr_rooms.push(m.room_id.clone());
                }
                continue;
            }
            match m.membership.as_str() {
                "join"
                    if since.is_none() || (changed(m.stream_ordering) && prev != Some("join")) =>
                {
                    full_rooms.push(m.room_id.clone())
                }
                "join" => incr_rooms.push(m.room_id.clone()),
                "invite" if changed(m.stream_ordering) => invites.push(m.clone()),
                "knock" if changed(m.stream_ordering) => knocks.push(m.clone()),
                "leave" | "ban"
                    if m.forgotten == 0
                        && changed(m.stream_ordering)
                        && (since.is_some() || rf.include_leave) =>
                {
                    left.push(m.clone())
                }
                _ => {}
            }
        }
        // full_state: every joined room's whole state, timelines still from `since`.
        let state_full_rooms: Vec<String> = if req.full_state {
            full_rooms
                .iter()
                .chain(incr_rooms.iter())
                .cloned()
                .collect()
        } else {
            full_rooms.clone()
        };

        // Timelines: one query for fully-sent rooms, one for the others.
        let (mut timeline, mut limited) = self
            .db
            .recent_events_per_room(&full_rooms, i64::MIN, cur.events, limit)
            .await?;
        let lower = since_ev.unwrap_or(0);
        let (t2, l2) = self
            .db
            .recent_events_per_room(&incr_rooms, lower, cur.events, limit)
            .await?;
        // Joined rooms with events since the last sync: the only ones whose membership moved.
        let active_rooms: Vec<String> = t2
            .iter()
            .map(|e| e.room_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        timeline.extend(t2);
        limited.extend(l2);
        let mut left_timelines: Vec<EventRow> = vec![];
        for m in &left {
            // Rare: rooms left since the last sync, each up to the leave.
            let (t, l) = self
                .db
                .recent_events_per_room(
                    std::slice::from_ref(&m.room_id),
                    lower,
                    m.stream_ordering,
                    limit,
                )
                .await?;
            left_timelines.extend(t);
            limited.extend(l);
        }
        let limited: HashMap<String, i64> = limited.into_iter().collect();
        let mut all_timeline = timeline;
        all_timeline.extend(left_timelines);
        let all_timeline: Vec<EventRow> = self
            .rooms()
            .filter_visible_with(user, all_timeline, &memberships)
            .await?
            .into_iter()
            .filter(|e| rf.timeline.allows(e))
            .collect();
        let mut by_room: BTreeMap<String, Vec<EventRow>> = BTreeMap::new();
        for e in all_timeline {
            by_room.entry(e.room_id.clone()).or_default().push(e);
        }
        // A left room with nothing in its timeline (an invite rejected or a knock rescinded in a
        // room not known here: the leave is an outlier): the leave itself.
        let bare_leaves: Vec<String> = left
            .iter()
            .filter(|m| !by_room.contains_key(&m.room_id))
            .map(|m| m.event_id.clone())
            .collect();
        for e in self.db.get_events(&bare_leaves).await? {
            if rf.timeline.allows(&e) {
                by_room.entry(e.room_id.clone()).or_default().push(e);
            }
        }
        let in_timeline: HashSet<&str> = by_room
            .values()
            .flatten()
            .map(|e| e.event_id.as_str())
            .collect();

        // State.
        let mut state_rows: Vec<EventRow> = if rf.state.lazy_load_members {
            self.db
                .current_state_without_members(&state_full_rooms)
                .await?
        } else {
            self.db
                .current_state_events(&state_full_rooms, None)
                .await?
        };
        let limited_incr: Vec<String> = incr_rooms
            .iter()
            .filter(|r| limited.contains_key(*r))
            .cloned()
            .collect();
        state_rows.extend(
            self.db
                .current_state_changed(&limited_incr, lower, cur.events)
                .await?,
        );
        if rf.state.lazy_load_members {
            // Only the members the timelines need, and the user's own.
            let rooms: Vec<String> = full_rooms
                .iter()
                .chain(incr_rooms.iter())
                .filter(|r| by_room.contains_key(*r) || full_rooms.contains(r))
                .cloned()
                .collect();
            let mut senders: Vec<String> = by_room
                .values()
                .flatten()
                .map(|e| e.sender.clone())
                .collect();
            senders.push(user.to_string());
            senders.sort();
            senders.dedup();
            state_rows.extend(self.db.current_members(&rooms, &senders).await?);
        }
        let mut seen = HashSet::new();
        let mut state_by_room: BTreeMap<String, Vec<EventRow>> = BTreeMap::new();
        for s in state_rows {
            if in_timeline.contains(s.event_id.as_str())
                || !seen.insert(s.event_id.clone())
                || !rf.state.allows(&s)
            {
                continue;
            }
            if rf.state.lazy_load_members && s.kind == "m.room.member" {
                let key = s.state_key.as_deref().unwrap_or_default();
                let needed = key == user.as_str()
                    || by_room
                        .get(&s.room_id)
                        .is_some_and(|evs| evs.iter().any(|e| e.sender == key));
                if !needed {
                    continue;
                }
            } else if !req.full_state
                && incr_rooms.contains(&s.room_id)
                && !limited.contains_key(&s.room_id)
                && s.stream_ordering <= lower
            {
                continue;
            }
            state_by_room.entry(s.room_id.clone()).or_default().push(s);
        }

        // Account data.
        let ad_since = since.map(|s| s.account_data).unwrap_or(0);
        let account_data = if ad_since < cur.account_data {
            self.db
                .account_data_since(user.as_str(), ad_since, cur.account_data)
                .await?
        } else {
            vec![]
        };
        let mut global_ad = vec![];
        let mut room_ad: HashMap<String, Vec<Value>> = HashMap::new();
        for (room, kind, content) in account_data {
            let ev = json!({ "type": kind, "content": serde_json::from_str::<Value>(&content).unwrap_or_default() });
            if room.is_empty() {
                if req.filter.account_data.allows_type(&kind) {
                    global_ad.push(ev);
                }
            } else if rf.account_data.allows_type(&kind) {
                room_ad.entry(room).or_default().push(ev);
            }
        }

        // Push rules never changed are the server defaults, sent on initial syncs.
        if since.is_none()
            && req.filter.account_data.allows_type("m.push_rules")
            && !global_ad.iter().any(|e| e["type"] == "m.push_rules")
        {
            let rules = crate::services::push::ruleset_json(&*self.push().ruleset(user).await?)?;
            global_ad.push(json!({ "type": "m.push_rules", "content": { "global": rules } }));
        }

        // Summaries for rooms sent in full and rooms whose membership moved.
        let summary_rooms: Vec<String> = full_rooms
            .iter()
            .chain(incr_rooms.iter().filter(|r| {
                by_room
                    .get(*r)
                    .is_some_and(|e| e.iter().any(|e| e.kind == "m.room.member"))
            }))
            .cloned()
            .collect();
        let summaries = self.summaries(user, &summary_rooms).await?;

        // Ephemeral: receipts and typing of joined rooms.
        let mut receipts = self
            .receipts_for_sync(user, since.map(|s| s.receipts), cur.receipts)
            .await?;
        let joined_set: HashSet<&str> = full_rooms
            .iter()
            .chain(incr_rooms.iter())
            .map(String::as_str)
            .collect();
        let mut typing = self.typing_for_sync(&joined_set, since.map(|s| s.typing), cur.typing);

        // Unread notification counts of every room, in one query.
        let mut unread: HashMap<String, (Value, Map<String, Value>)> = HashMap::new();
        for c in self.db.unread_counts(user.as_str(), cur.events).await? {
            let (main, threads) = unread.entry(c.room_id).or_insert_with(|| {
                (
                    json!({ "notification_count": 0, "highlight_count": 0 }),
                    Map::new(),
                )
            });
            if rf.timeline.unread_thread_notifications && c.thread_id != "main" {
                threads.insert(
                    c.thread_id,
                    json!({ "notification_count": c.notifications, "highlight_count": c.highlights }),
                );
            } else {
                for (k, v) in [
                    ("notification_count", c.notifications),
                    ("highlight_count", c.highlights),
                ] {
                    main[k] = json!(main[k].as_i64().unwrap_or(0) + v);
                }
            }
        }

        // Bundled aggregations of every timeline event, for all rooms at once.
        let aggregations = self
            .rooms()
            .aggregations(by_room.values().flatten(), viewer)
            .await?;

        // Assemble.
        let mut join = Map::new();
        for room_id in full_rooms.iter().chain(incr_rooms.iter()) {
            let events = by_room.remove(room_id).unwrap_or_default();
            let state = state_by_room.remove(room_id).unwrap_or_default();
            let ad = room_ad.remove(room_id).unwrap_or_default();
            let summary = summaries.get(room_id);
            let is_full = req.full_state || full_rooms.contains(room_id);
            let ephemeral: Vec<Value> = receipts
                .remove(room_id)
                .into_iter()
                .chain(typing.remove(room_id))
                .filter(|e| {
                    rf.ephemeral
                        .allows_type(e["type"].as_str().unwrap_or_default())
                })
                .collect();
            if !is_full
                && events.is_empty()
                && state.is_empty()
                && ad.is_empty()
                && ephemeral.is_empty()
                && summary.is_none()
            {
                continue;
            }
            let mut obj = self
                .room_sections(
                    &events,
                    &state,
                    limited.contains_key(room_id),
                    lower,
                    viewer,
                    &aggregations,
                )
                .await?;
            obj["account_data"] = json!({ "events": ad });
            obj["ephemeral"] = json!({ "events": ephemeral });
            let (counts, threads) = unread.remove(room_id).unwrap_or_else(|| {
                (
                    json!({ "notification_count": 0, "highlight_count": 0 }),
                    Map::new(),
                )
            });
            obj["unread_notifications"] = counts;
            if rf.timeline.unread_thread_notifications {
                obj["unread_thread_notifications"] = Value::Object(threads);
            }
            if let Some(s) = summary {
                obj["summary"] = s.clone();
            }
            join.insert(room_id.clone(), obj);
        }
        let mut leave = Map::new();
        for m in &left {
            let events = by_room.remove(&m.room_id).unwrap_or_default();
            let state = state_by_room.remove(&m.room_id).unwrap_or_default();
            let mut obj = self
                .room_sections(
                    &events,
                    &state,
                    limited.contains_key(&m.room_id),
                    lower,
                    viewer,
                    &aggregations,
                )
                .await?;
            obj["account_data"] =
                json!({ "events": room_ad.remove(&m.room_id).unwrap_or_default() });
            leave.insert(m.room_id.clone(), obj);
        }
        let invite = self.stripped_sections(&invites, "invite_state").await?;
        let knock = self.stripped_sections(&knocks, "knock_state").await?;
        let presence = self
            .presence_events(user, since.map_or(0, |s| s.presence), cur.presence)
            .await?;

        // End-to-end encryption: to-device messages, device lists, key counts.
        let (to_device, to_device_pos) = self
            .e2ee()
            .to_device_for_sync(
                user,
                &r.device_id,
                since.map_or(0, |s| s.to_device),
                cur.to_device,
            )
            .await?;
        let (changed, left_users) = match since {
            Some(s) => {
                let left_rooms: Vec<String> = left.iter().map(|m| m.room_id.clone()).collect();
                self.e2ee()
                    .device_list_delta(
                        user,
                        Window {
                            lists_since: s.device_lists,
                            lists_until: cur.device_lists,
                            events_since: s.events,
                            events_until: cur.events,
                        },
                        RoomsSeen {
                            active: &active_rooms,
                            newly_joined: &full_rooms,
                            left: &left_rooms,
                        },
                    )
                    .await?
            }
            None => (vec![], vec![]),
        };
        let (otk_counts, fallback_types) = self.e2ee().key_counts(user, &r.device_id).await?;

        let empty = join.is_empty()
            && leave.is_empty()
            && invite.is_empty()
            && knock.is_empty()
            && global_ad.is_empty()
            && presence.is_empty()
            && to_device.is_empty()
            && changed.is_empty()
            && left_users.is_empty();
        let next = SyncToken {
            to_device: to_device_pos,
            ..cur
        };
        let resp = json!({
            "next_batch": next.to_string(),
            "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
            "account_data": { "events": global_ad },
            "presence": { "events": presence },
            "to_device": { "events": to_device },
            "device_lists": { "changed": changed, "left": left_users },
            "device_one_time_keys_count": otk_counts,
            "device_unused_fallback_key_types": fallback_types,
        });
        Ok((resp, empty))
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
