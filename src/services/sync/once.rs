//! One pass of `/sync` v2, step by step: the rooms by membership (joined, invited, left,
//! knocked) with their timelines and state, account data, ephemeral events (receipts, typing),
//! unread counts, presence, then end-to-end encryption (to-device, device lists, key counts),
//! assembled into the response.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ruma::UserId;
use serde_json::{json, Map, Value};

use super::{SyncFace, SyncRequest, SyncToken, DEFAULT_TIMELINE_LIMIT};
use crate::services::{
    e2ee::{RoomsSeen, Window},
    filter::RoomFilter,
    requester::Requester,
};
use crate::store::{events::EventRow, rooms::MembershipRow};
use crate::Result;

/// What a pass works from: who asks, from where to where, with which filter.
#[derive(Clone, Copy)]
struct Pass<'a> {
    r: &'a Requester,
    since: Option<SyncToken>,
    cur: SyncToken,
    req: &'a SyncRequest,
    rf: &'a RoomFilter,
    limit: i64,
    /// The event position of the last sync (0 on an initial sync).
    lower: i64,
}

impl Pass<'_> {
    fn user(&self) -> &UserId {
        &self.r.user_id
    }

    fn viewer(&self) -> Option<(&UserId, &str)> {
        Some((self.user(), self.r.device_id.as_str()))
    }

    /// Whether an event stream position falls in this pass's window.
    fn changed(&self, stream: i64) -> bool {
        self.since
            .map(|s| s.events)
            .is_none_or(|s| stream > s && stream <= self.cur.events)
    }
}

/// The user's rooms, sorted by what this pass sends of them.
struct RoomSets {
    /// Newly joined: complete state, timeline from the start.
    full: Vec<String>,
    /// Joined before: what changed since.
    incr: Vec<String>,
    invites: Vec<MembershipRow>,
    knocks: Vec<MembershipRow>,
    left: Vec<MembershipRow>,
    /// Rooms whose whole state is sent (all joined rooms with `full_state`).
    state_full: Vec<String>,
}

/// The rooms' timelines, visible and filtered.
struct Timelines {
    by_room: BTreeMap<String, Vec<EventRow>>,
    limited: HashMap<String, i64>,
    /// Joined rooms with events since the last sync: the only ones whose membership moved.
    active: Vec<String>,
}

/// The end-to-end encryption sections.
struct E2eeSections {
    to_device: Vec<Value>,
    to_device_pos: i64,
    changed: Vec<String>,
    left_users: Vec<String>,
    otk_counts: Value,
    fallback_types: Vec<String>,
}

type Unread = HashMap<String, (Value, Map<String, Value>)>;

impl SyncFace<'_> {
    pub(super) async fn sync_once(
        self,
        r: &Requester,
        since: Option<SyncToken>,
        cur: SyncToken,
        req: &SyncRequest,
    ) -> Result<(Value, bool)> {
        let rf = &req.filter.room;
        let p = Pass {
            r,
            since,
            cur,
            req,
            rf,
            limit: rf.timeline.limit_or(DEFAULT_TIMELINE_LIMIT),
            lower: since.map(|s| s.events).unwrap_or(0),
        };
        let user = p.user();
        let memberships = self.db.user_memberships(user.as_str()).await?;
        let rooms = self.sort_rooms(p, &memberships).await?;
        let mut tl = self.timelines(p, &rooms, &memberships).await?;
        let mut state = self.room_state(p, &rooms, &tl).await?;
        let (global_ad, mut room_ad) = self.account_data_for_sync(p).await?;
        let summaries = self
            .summaries(user, &self.summary_rooms(&rooms, &tl))
            .await?;
        let mut ephemeral = self.ephemeral_for_sync(p, &rooms).await?;
        let mut unread = self.unread_for_sync(p).await?;
        let aggregations = self
            .rooms()
            .aggregations(tl.by_room.values().flatten(), p.viewer())
            .await?;

        let join = self
            .joined_sections(
                p,
                &rooms,
                &mut tl,
                &mut state,
                &mut room_ad,
                &summaries,
                &mut ephemeral,
                &mut unread,
                &aggregations,
            )
            .await?;
        let leave = self
            .left_sections(p, &rooms, &mut tl, &mut state, &mut room_ad, &aggregations)
            .await?;
        let invites = self.invites_not_ignored(user, &rooms.invites).await?;
        let invite = self.stripped_sections(&invites, "invite_state").await?;
        let knock = self.stripped_sections(&rooms.knocks, "knock_state").await?;
        let presence = self
            .presence_events(user, since.map_or(0, |s| s.presence), cur.presence)
            .await?;
        let e2ee = self.e2ee_for_sync(p, &rooms, &tl).await?;

        let empty = join.is_empty()
            && leave.is_empty()
            && invite.is_empty()
            && knock.is_empty()
            && global_ad.is_empty()
            && presence.is_empty()
            && e2ee.to_device.is_empty()
            && e2ee.changed.is_empty()
            && e2ee.left_users.is_empty();
        let next = SyncToken {
            to_device: e2ee.to_device_pos,
            ..cur
        };
        let resp = json!({
            "next_batch": next.to_string(),
            "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
            "account_data": { "events": global_ad },
            "presence": { "events": presence },
            "to_device": { "events": e2ee.to_device },
            "device_lists": { "changed": e2ee.changed, "left": e2ee.left_users },
            "device_one_time_keys_count": e2ee.otk_counts,
            "device_unused_fallback_key_types": e2ee.fallback_types,
        });
        Ok((resp, empty))
    }

    /// The invites whose inviter the user does not ignore (spec: an ignored user's invites are
    /// not sent).
    async fn invites_not_ignored(
        self,
        user: &UserId,
        invites: &[MembershipRow],
    ) -> Result<Vec<MembershipRow>> {
        let ignored = self.ignored_users(user).await?;
        if ignored.is_empty() || invites.is_empty() {
            return Ok(invites.to_vec());
        }
        let ids: Vec<String> = invites.iter().map(|m| m.event_id.clone()).collect();
        let senders: HashMap<String, String> = self
            .db
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|e| (e.event_id, e.sender))
            .collect();
        Ok(invites
            .iter()
            .filter(|m| {
                senders
                    .get(&m.event_id)
                    .is_none_or(|s| !ignored.contains(s))
            })
            .cloned()
            .collect())
    }

    /// Rooms: each membership sorted into joined (in full or since), invited, knocked or left.
    async fn sort_rooms(self, p: Pass<'_>, memberships: &[MembershipRow]) -> Result<RoomSets> {
        let (since, cur, rf) = (p.since, p.cur, p.rf);
        // The membership each row replaced (from the member event's unsigned prev_content), for
        // rows that changed since the last sync or are newer than this sync's position: a
        // join -> join (profile change) is not a new join, and a change past `cur` is judged by
        // the membership it replaced.
        let rechecked: Vec<String> = memberships
            .iter()
            .filter(|m| {
                m.stream_ordering > cur.events
                    || (since.is_some() && m.membership == "join" && p.changed(m.stream_ordering))
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

        let mut full = vec![];
        let mut incr = vec![];
        let mut invites = vec![];
        let mut knocks = vec![];
        let mut left = vec![];
        for m in memberships {
            if !rf.allows_room(&m.room_id) {
                continue;
            }
            let prev = previous.get(&m.event_id).map(String::as_str);
            if m.stream_ordering > cur.events {
                // Not readable yet: as of `cur` the user still had the previous membership.
                if prev == Some("join") && since.is_some() {
                    incr.push(m.room_id.clone());
                }
                continue;
            }
            let changed = p.changed(m.stream_ordering);
            match m.membership.as_str() {
                "join" if since.is_none() || (changed && prev != Some("join")) => {
                    full.push(m.room_id.clone())
                }
                "join" => incr.push(m.room_id.clone()),
                "invite" if changed => invites.push(m.clone()),
                "knock" if changed => knocks.push(m.clone()),
                "leave" | "ban"
                    if m.forgotten == 0 && changed && (since.is_some() || rf.include_leave) =>
                {
                    left.push(m.clone())
                }
                _ => {}
            }
        }
        // full_state: every joined room's whole state, timelines still from `since`.
        let state_full: Vec<String> = if p.req.full_state {
            full.iter().chain(incr.iter()).cloned().collect()
        } else {
            full.clone()
        };
        Ok(RoomSets {
            full,
            incr,
            invites,
            knocks,
            left,
            state_full,
        })
    }

    /// Timelines: one query for fully-sent rooms, one for the others, one per room left; what
    /// the user may see and the filter lets through, by room.
    async fn timelines(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
        memberships: &[MembershipRow],
    ) -> Result<Timelines> {
        let (cur, rf, limit, lower) = (p.cur, p.rf, p.limit, p.lower);
        let (mut timeline, mut limited) = self
            .db
            .recent_events_per_room(&rooms.full, i64::MIN, cur.events, limit)
            .await?;
        let (t2, l2) = self
            .db
            .recent_events_per_room(&rooms.incr, lower, cur.events, limit)
            .await?;
        let active: Vec<String> = t2
            .iter()
            .map(|e| e.room_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        timeline.extend(t2);
        limited.extend(l2);
        let mut left_timelines: Vec<EventRow> = vec![];
        for m in &rooms.left {
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
            .filter_visible_with(p.user(), all_timeline, memberships)
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
        let bare_leaves: Vec<String> = rooms
            .left
            .iter()
            .filter(|m| !by_room.contains_key(&m.room_id))
            .map(|m| m.event_id.clone())
            .collect();
        for e in self.db.get_events(&bare_leaves).await? {
            if rf.timeline.allows(&e) {
                by_room.entry(e.room_id.clone()).or_default().push(e);
            }
        }
        Ok(Timelines {
            by_room,
            limited,
            active,
        })
    }

    /// State: whole for rooms sent in full, what changed for limited rooms, only the members
    /// the timelines need when lazy-loading; none of what the timelines already carry.
    async fn room_state(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
        tl: &Timelines,
    ) -> Result<BTreeMap<String, Vec<EventRow>>> {
        let (user, rf, lower) = (p.user(), p.rf, p.lower);
        let (by_room, limited) = (&tl.by_room, &tl.limited);
        let in_timeline: HashSet<&str> = by_room
            .values()
            .flatten()
            .map(|e| e.event_id.as_str())
            .collect();
        let mut state_rows: Vec<EventRow> = if rf.state.lazy_load_members {
            self.db
                .current_state_without_members(&rooms.state_full)
                .await?
        } else {
            self.db
                .current_state_events(&rooms.state_full, None)
                .await?
        };
        let limited_incr: Vec<String> = rooms
            .incr
            .iter()
            .filter(|r| limited.contains_key(*r))
            .cloned()
            .collect();
        state_rows.extend(
            self.db
                .current_state_changed(&limited_incr, lower, p.cur.events)
                .await?,
        );
        if rf.state.lazy_load_members {
            // Only the members the timelines need, and the user's own.
            let lazy_rooms: Vec<String> = rooms
                .full
                .iter()
                .chain(rooms.incr.iter())
                .filter(|r| by_room.contains_key(*r) || rooms.full.contains(r))
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
            state_rows.extend(self.db.current_members(&lazy_rooms, &senders).await?);
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
            } else if !p.req.full_state
                && rooms.incr.contains(&s.room_id)
                && !limited.contains_key(&s.room_id)
                && s.stream_ordering <= lower
            {
                continue;
            }
            state_by_room.entry(s.room_id.clone()).or_default().push(s);
        }
        Ok(state_by_room)
    }

    /// Account data: global and per room since the last sync; the default push rules on an
    /// initial sync when the user never changed them.
    async fn account_data_for_sync(
        self,
        p: Pass<'_>,
    ) -> Result<(Vec<Value>, HashMap<String, Vec<Value>>)> {
        let (user, since, cur, req) = (p.user(), p.since, p.cur, p.req);
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
            } else if p.rf.account_data.allows_type(&kind) {
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
        Ok((global_ad, room_ad))
    }

    /// Rooms that get a summary: those sent in full and those whose membership moved.
    fn summary_rooms(self, rooms: &RoomSets, tl: &Timelines) -> Vec<String> {
        rooms
            .full
            .iter()
            .chain(rooms.incr.iter().filter(|r| {
                tl.by_room
                    .get(*r)
                    .is_some_and(|e| e.iter().any(|e| e.kind == "m.room.member"))
            }))
            .cloned()
            .collect()
    }

    /// Ephemeral: receipts and typing of joined rooms, by room.
    async fn ephemeral_for_sync(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
    ) -> Result<(BTreeMap<String, Value>, BTreeMap<String, Value>)> {
        let receipts = self
            .receipts_for_sync(p.user(), p.since.map(|s| s.receipts), p.cur.receipts)
            .await?;
        let joined_set: HashSet<&str> = rooms
            .full
            .iter()
            .chain(rooms.incr.iter())
            .map(String::as_str)
            .collect();
        let typing = self.typing_for_sync(&joined_set, p.since.map(|s| s.typing), p.cur.typing);
        Ok((receipts, typing))
    }

    /// Unread notification counts of every room (and of its threads), in one query.
    async fn unread_for_sync(self, p: Pass<'_>) -> Result<Unread> {
        let mut unread: Unread = HashMap::new();
        for c in self
            .db
            .unread_counts(p.user().as_str(), p.cur.events)
            .await?
        {
            let (main, threads) = unread.entry(c.room_id).or_insert_with(|| {
                (
                    json!({ "notification_count": 0, "highlight_count": 0 }),
                    Map::new(),
                )
            });
            if p.rf.timeline.unread_thread_notifications && c.thread_id != "main" {
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
        Ok(unread)
    }

    /// `rooms.join`: each joined room with something to send (or sent in full).
    #[allow(clippy::too_many_arguments)]
    async fn joined_sections(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
        tl: &mut Timelines,
        state: &mut BTreeMap<String, Vec<EventRow>>,
        room_ad: &mut HashMap<String, Vec<Value>>,
        summaries: &HashMap<String, Value>,
        (receipts, typing): &mut (BTreeMap<String, Value>, BTreeMap<String, Value>),
        unread: &mut Unread,
        aggregations: &HashMap<String, Value>,
    ) -> Result<Map<String, Value>> {
        let rf = p.rf;
        let mut join = Map::new();
        for room_id in rooms.full.iter().chain(rooms.incr.iter()) {
            let events = tl.by_room.remove(room_id).unwrap_or_default();
            let state = state.remove(room_id).unwrap_or_default();
            let ad = room_ad.remove(room_id).unwrap_or_default();
            let summary = summaries.get(room_id);
            let is_full = p.req.full_state || rooms.full.contains(room_id);
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
                    tl.limited.contains_key(room_id),
                    p.lower,
                    p.viewer(),
                    aggregations,
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
        Ok(join)
    }

    /// `rooms.leave`: each room left since the last sync, up to the leave.
    async fn left_sections(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
        tl: &mut Timelines,
        state: &mut BTreeMap<String, Vec<EventRow>>,
        room_ad: &mut HashMap<String, Vec<Value>>,
        aggregations: &HashMap<String, Value>,
    ) -> Result<Map<String, Value>> {
        let mut leave = Map::new();
        for m in &rooms.left {
            let events = tl.by_room.remove(&m.room_id).unwrap_or_default();
            let state = state.remove(&m.room_id).unwrap_or_default();
            let mut obj = self
                .room_sections(
                    &events,
                    &state,
                    tl.limited.contains_key(&m.room_id),
                    p.lower,
                    p.viewer(),
                    aggregations,
                )
                .await?;
            obj["account_data"] =
                json!({ "events": room_ad.remove(&m.room_id).unwrap_or_default() });
            leave.insert(m.room_id.clone(), obj);
        }
        Ok(leave)
    }

    /// End-to-end encryption: to-device messages, device lists, key counts.
    async fn e2ee_for_sync(
        self,
        p: Pass<'_>,
        rooms: &RoomSets,
        tl: &Timelines,
    ) -> Result<E2eeSections> {
        let (user, device_id, cur) = (p.user(), &p.r.device_id, p.cur);
        let (to_device, to_device_pos) = self
            .e2ee()
            .to_device_for_sync(
                user,
                device_id,
                p.since.map_or(0, |s| s.to_device),
                cur.to_device,
            )
            .await?;
        let (changed, left_users) = match p.since {
            Some(s) => {
                let left_rooms: Vec<String> =
                    rooms.left.iter().map(|m| m.room_id.clone()).collect();
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
                            active: &tl.active,
                            newly_joined: &rooms.full,
                            left: &left_rooms,
                        },
                    )
                    .await?
            }
            None => (vec![], vec![]),
        };
        let (otk_counts, fallback_types) = self.e2ee().key_counts(user, device_id).await?;
        Ok(E2eeSections {
            to_device,
            to_device_pos,
            changed,
            left_users,
            otk_counts,
            fallback_types,
        })
    }
}
