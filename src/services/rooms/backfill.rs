//! Backfill, the asking side: when `/messages` runs out of events in a room joined over
//! federation, older events are fetched from a server of the room (`/backfill`), checked, and
//! stored before the room's earliest event here.
//!
//! Backfilled events are old: they never touch the current state, the forward extremities nor
//! notifications. Each gets the state after it (for history visibility), computed forward from
//! the state the serving server reports before the oldest of them (`/state_ids`), and goes
//! through the auth rules against its auth events and that state. They take stream positions
//! below every stored event (allocated downwards), deepest last, so timelines read them in order
//! before the local start. A gap (the earliest event here) is asked about once; the room start
//! (its create event) ends backfilling for the room.

use super::store_events::{EventWrite, Placement};
use crate::services::rooms::RoomsFace;
use ruma::api::federation::{authorization::get_event_authorization, backfill::get_backfill};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res, OwnedEventId, OwnedRoomId, RoomId, ServerName,
};
use serde_json::Value;

use super::{auth_events::check_auth_events, pdu::Pdu, resolve::State, GroupWrite};
use crate::{
    services::rooms::{
        federation_port::{owned, room_servers, MAX_FROM_EVENTS},
        relation_of,
    },
    store::{events::NewEvent, relations::NewRelation},
    Result,
};

/// Events asked per `/backfill` (the spec's usual maximum).
const BACKFILL_LIMIT: i64 = 100;
/// Servers tried per backfill.
const MAX_SERVERS: usize = 3;
/// States fetched from the serving server per backfilled batch.
const MAX_STATE_FETCHES: usize = 3;

#[derive(Default)]
pub struct Backfill {
    /// The stream position below every stored event (None until first used).
    floor: tokio::sync::Mutex<Option<i64>>,
    /// One backfill per room at a time.
    rooms: parking_lot::Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
}

/// An event of a backfilled batch, checked and placed.
struct Placed {
    pdu: Arc<Pdu>,
    json: String,
    group: i64,
    /// The sender had the `redact` power in the state before the event.
    may_redact_any: bool,
}

/// A backfilled batch being placed: the auth events known so far, the state group of each
/// placed event, the states and chain lengths of the groups made here, and what is placed.
#[derive(Default)]
struct Placing {
    auth: HashMap<OwnedEventId, Arc<Pdu>>,
    create: Option<Arc<Pdu>>,
    group_of: HashMap<OwnedEventId, i64>,
    states: HashMap<i64, State>,
    chain_len: HashMap<i64, i64>,
    writes: Vec<GroupWrite>,
    placed: Vec<Placed>,
    /// States fetched from the serving server so far.
    fetches: usize,
    reached_create: bool,
}

impl RoomsFace<'_> {
    /// Fetches the history before the earliest event this server has of a room, from a server
    /// of the room. Returns whether events were added.
    pub(super) async fn backfill_room(self, room_id: &RoomId) -> Result<bool> {
        let lock = self
            .room_cache
            .backfill
            .rooms
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .clone();
        let res = {
            let _one = lock.lock().await;
            self.backfill_locked(room_id).await
        };
        {
            let mut rooms = self.room_cache.backfill.rooms.lock();
            if Arc::strong_count(&lock) <= 2 {
                rooms.remove(room_id);
            }
        }
        res
    }

    async fn backfill_locked(self, room_id: &RoomId) -> Result<bool> {
        let (asked, reached) = self.db.room_backfill(room_id.as_str()).await?;
        if reached {
            return Ok(false);
        }
        let Some(earliest) = self.db.earliest_event(room_id.as_str()).await? else {
            return Ok(false);
        };
        if earliest.kind == "m.room.create" {
            self.db
                .set_room_backfill(room_id.as_str(), asked.as_deref(), true)
                .await?;
            return Ok(false);
        }
        if asked.as_deref() == Some(earliest.event_id.as_str()) {
            return Ok(false);
        }
        let from = self
            .db
            .prev_events_of(std::slice::from_ref(&earliest.event_id))
            .await?;
        if from.is_empty() {
            return Ok(false);
        }
        let rules = self.room_rules(room_id.as_str()).await?;
        let servers = {
            let guard = self.lock_room(room_id).await?;
            guard
                .as_ref()
                .map(|r| room_servers(r, &self.server_name))
                .unwrap_or_default()
        };
        if servers.is_empty() {
            return Ok(false);
        }
        let from = from
            .iter()
            .take(MAX_FROM_EVENTS)
            .map(|v| owned(v.as_str()))
            .collect::<Result<Vec<_>>>()?;
        let request = get_backfill::v1::Request::new(
            room_id.to_owned(),
            from,
            ruma::UInt::from(BACKFILL_LIMIT as u32),
        );
        let mut answer = None;
        for server in servers.iter().take(MAX_SERVERS) {
            match self.call(server, request.clone()).await {
                Ok(v) => {
                    answer = Some((server.clone(), v));
                    break;
                }
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e.message, "backfill failed")
                }
            }
        }
        let Some((server, v)) = answer else {
            return Ok(false);
        };
        // This gap is asked about once, whatever came back.
        self.db
            .set_room_backfill(room_id.as_str(), Some(&earliest.event_id), false)
            .await?;
        let pdus: Vec<Value> = v["pdus"]
            .as_array()
            .into_iter()
            .flatten()
            .take(BACKFILL_LIMIT as usize)
            .cloned()
            .collect();
        let (added, start) = self
            .store_backfilled(&server, room_id, &rules, &pdus)
            .await?;
        if start {
            self.db
                .set_room_backfill(room_id.as_str(), Some(&earliest.event_id), true)
                .await?;
        }
        Ok(added > 0)
    }

    /// Checks and stores a backfilled batch; returns how many events were stored and whether
    /// the room's create event is among them.
    async fn store_backfilled(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdus: &[Value],
    ) -> Result<(usize, bool)> {
        let events = self.backfill_batch(room_id, rules, pdus).await?;
        if events.is_empty() {
            return Ok((0, false));
        }
        let auth = self
            .backfill_auth_events(server, room_id, rules, &events)
            .await?;
        // The create event (not among the auth events from room version 12 on).
        let create = match self.room_create_pdu(room_id).await? {
            Some(c) => Some(c),
            None => events
                .iter()
                .map(|(p, _)| p)
                .find(|p| p.kind == TimelineEventType::RoomCreate)
                .cloned(),
        };

        // Place each event, oldest first: the state before it, its checks, the state after.
        let mut pl = Placing {
            auth,
            create,
            ..Default::default()
        };
        for (pdu, json) in events {
            let Some((before, before_group)) = self
                .backfill_state_before(server, room_id, rules, &mut pl, &pdu)
                .await?
            else {
                continue;
            };
            if !self.backfill_passes_auth(rules, &pl, &pdu, &before) {
                tracing::info!(event = %pdu.event_id, "backfilled event refused by the auth rules");
                continue;
            }
            self.place_backfilled(rules, &mut pl, pdu, json, before, before_group);
        }
        if pl.placed.is_empty() {
            return Ok((0, false));
        }
        let count = self
            .write_backfilled(room_id, &pl.placed, &pl.writes)
            .await?;
        Ok((count, pl.reached_create))
    }

    /// Step 1, the batch: the events that pass the format, signature and hash checks, are of
    /// the room and are not in its timeline here yet, oldest first.
    async fn backfill_batch(
        self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdus: &[Value],
    ) -> Result<Vec<(Arc<Pdu>, String)>> {
        let mut events: Vec<(Arc<Pdu>, String)> = vec![];
        let mut seen = HashSet::new();
        for v in pdus {
            let Ok(c) = self.check_pdu(v, rules).await else {
                continue;
            };
            let Ok(p) = Pdu::parse(c.event_id.as_str(), &c.json) else {
                continue;
            };
            let in_room = super::pdu::belongs_to(
                &p,
                room_id,
                rules.authorization.room_create_event_id_as_room_id,
            );
            if in_room && seen.insert(p.event_id.clone()) {
                events.push((p, c.json));
            }
        }
        // Events already in the timeline here are dropped, and so are those rejected here
        // (never in a timeline); outliers take their place.
        let ids: Vec<String> = events.iter().map(|(p, _)| p.event_id.to_string()).collect();
        let in_timeline: HashSet<String> = self
            .db
            .get_events_with_rejected(&ids)
            .await?
            .into_iter()
            .filter(|r| !r.is_outlier() || r.is_rejected())
            .map(|r| r.event_id)
            .collect();
        events.retain(|(p, _)| !in_timeline.contains(p.event_id.as_str()));
        events.sort_by_key(|(p, _)| (p.depth, p.origin_server_ts));
        Ok(events)
    }

    /// Step 2, the auth events of the batch: stored here, or in the batch; one `/event_auth`
    /// for what is missing.
    async fn backfill_auth_events(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        events: &[(Arc<Pdu>, String)],
    ) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
        let auth_ids: Vec<String> = events
            .iter()
            .flat_map(|(p, _)| p.auth_events.iter().map(|e| e.to_string()))
            .collect();
        let mut auth = self.load_pdus(&auth_ids).await?;
        let batch_ids: HashSet<&OwnedEventId> = events.iter().map(|(p, _)| &p.event_id).collect();
        let lacking = events.iter().find(|(p, _)| {
            p.auth_events
                .iter()
                .any(|a| !auth.contains_key(a) && !batch_ids.contains(a))
        });
        if let Some((p, _)) = lacking {
            let request =
                get_event_authorization::v1::Request::new(room_id.to_owned(), p.event_id.clone());
            if let Ok(v) = self.call(server, request).await {
                let chain = v["auth_chain"].as_array().cloned().unwrap_or_default();
                self.store_outliers(room_id, rules, &chain).await?;
                auth = self.load_pdus(&auth_ids).await?;
            }
        }
        Ok(auth)
    }

    /// Step 3, the state before an event: that of its prev events placed in the batch, else
    /// of those stored here, else asked of the serving server (`/state_ids`, a few times per
    /// batch). Returns the state and its group when it is exactly one placed event's, or None
    /// when the event cannot be placed.
    async fn backfill_state_before(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pl: &mut Placing,
        pdu: &Pdu,
    ) -> Result<Option<(State, Option<i64>)>> {
        let in_batch: Vec<i64> = pdu
            .prev_events
            .iter()
            .filter_map(|p| pl.group_of.get(p).copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if in_batch.len() == 1 {
            let g = in_batch[0];
            return Ok(Some((
                pl.states.get(&g).cloned().unwrap_or_default(),
                Some(g),
            )));
        }
        if in_batch.len() > 1 {
            let all: Vec<&State> = in_batch.iter().filter_map(|g| pl.states.get(g)).collect();
            return Ok(Some((self.resolve_states(rules, &all).await?, None)));
        }
        if pdu.kind == TimelineEventType::RoomCreate {
            return Ok(Some((State::new(), None)));
        }
        let prevs: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
        let known = self
            .db
            .event_places(&prevs)
            .await?
            .into_iter()
            .filter(|p| p.room_id == room_id.as_str())
            .filter(|p| !p.outlier && p.state_group.is_some_and(|g| g > 0))
            .filter_map(|p| p.state_group)
            .collect::<Vec<_>>();
        if !known.is_empty() {
            let loaded = self.states_of_groups(&known).await?;
            let all: Vec<&State> = loaded.values().collect();
            return Ok(Some((self.resolve_states(rules, &all).await?, None)));
        }
        if pl.fetches >= MAX_STATE_FETCHES {
            return Ok(None);
        }
        pl.fetches += 1;
        match self
            .remote_state_before(server, room_id, rules, pdu.event_id.as_str())
            .await
        {
            Ok(s) => {
                // The state's events may be auth events of later ones.
                for p in s.values() {
                    pl.auth.insert(p.event_id.clone(), p.clone());
                }
                Ok(Some((s, None)))
            }
            Err(e) => {
                tracing::info!(%room_id, error = %e.message, "no state for a backfilled event");
                Ok(None)
            }
        }
    }

    /// Step 4, the checks: the auth rules against the event's auth events, then against the
    /// state before it, then this server's access rules.
    fn backfill_passes_auth(
        self,
        rules: &RoomVersionRules,
        pl: &Placing,
        pdu: &Arc<Pdu>,
        before: &State,
    ) -> bool {
        !(check_auth_events(rules, pdu, &pl.auth, pl.create.as_ref()).is_err()
            || (pdu.kind != TimelineEventType::RoomCreate
                && state_res::check_state_dependent_auth_rules(
                    &rules.authorization,
                    &**pdu,
                    |t, k| before.get(&(t.clone(), k.to_owned())).cloned(),
                )
                .is_err())
            || crate::services::policy::access_rules::check(&self.policy_rules, before, pdu)
                .is_err())
    }

    /// Step 5, the state after an accepted event: its state group (that before it when it is
    /// no state event and the state before is one group), recorded with the event.
    fn place_backfilled(
        self,
        rules: &RoomVersionRules,
        pl: &mut Placing,
        pdu: Arc<Pdu>,
        json: String,
        before: State,
        before_group: Option<i64>,
    ) {
        pl.reached_create |= pdu.kind == TimelineEventType::RoomCreate;
        let may_redact_any = pdu.kind == TimelineEventType::RoomRedaction
            && super::user_power_in(rules, &before, &pdu.sender)
                >= super::action_power_in(&before, "redact");
        pl.auth.insert(pdu.event_id.clone(), pdu.clone());
        let key = pdu.state_key.as_ref().map(|k| {
            (
                StateEventType::from(pdu.kind.to_string().as_str()),
                k.clone(),
            )
        });
        let group = match (key, before_group) {
            (None, Some(g)) => g,
            (key, prev) => {
                let mut after = before;
                if let Some(k) = &key {
                    after.insert(k.clone(), pdu.clone());
                }
                let id = self.state_group_ids.next();
                // A group not made here has an unknown chain: snapshot.
                let prev = prev.and_then(|g| Some((g, *pl.chain_len.get(&g)?)));
                let write = GroupWrite::after(id, prev, key.as_ref().map(|k| (k, &*pdu)), &after);
                pl.chain_len.insert(id, write.chain_len);
                pl.writes.push(write);
                pl.states.insert(id, after);
                id
            }
        };
        pl.group_of.insert(pdu.event_id.clone(), group);
        pl.placed.push(Placed {
            pdu,
            json,
            group,
            may_redact_any,
        });
    }

    /// Step 6, the write: the placed events at stream positions below everything stored,
    /// deepest last, with their relations, redactions and state groups. Returns how many.
    async fn write_backfilled(
        self,
        room_id: &RoomId,
        placed: &[Placed],
        writes: &[GroupWrite],
    ) -> Result<usize> {
        let streams: Vec<i64> = {
            let mut floor = self.room_cache.backfill.floor.lock().await;
            let low = match *floor {
                Some(f) => f,
                None => self.db.min_stream_ordering().await?.min(0),
            } - placed.len() as i64;
            *floor = Some(low);
            (low..low + placed.len() as i64).collect()
        };
        let strings: Vec<super::pdu::PduStrings> = placed.iter().map(|p| p.pdu.strings()).collect();
        let rows: Vec<NewEvent> = placed
            .iter()
            .zip(&streams)
            .zip(&strings)
            .map(|((p, stream), s)| {
                p.pdu
                    .new_event(s, room_id.as_str(), &p.json, *stream, p.group, false)
            })
            .collect();
        let contents: Vec<Value> = placed
            .iter()
            .map(|p| serde_json::from_str(p.pdu.content.get()).unwrap_or(Value::Null))
            .collect();
        let relations: Vec<NewRelation> = rows
            .iter()
            .zip(&contents)
            .filter_map(|(ev, content)| {
                let (rel_type, parent) = relation_of(content)?;
                Some(NewRelation {
                    event_id: ev.event_id,
                    relates_to: parent,
                    rel_type,
                    sender: ev.sender,
                    kind: ev.kind,
                    stream_ordering: ev.stream_ordering,
                })
            })
            .collect();
        let relations = self.relations_in_room(room_id.as_str(), relations).await?;
        let redactions: Vec<super::redactions::RedactionIn> = placed
            .iter()
            .filter(|p| p.pdu.kind == TimelineEventType::RoomRedaction)
            .filter_map(|p| {
                Some(super::redactions::RedactionIn {
                    event_id: p.pdu.event_id.as_str(),
                    sender: p.pdu.sender.as_str(),
                    target: p.pdu.redacts.as_ref()?.as_str(),
                    may_redact_any: p.may_redact_any,
                })
            })
            .collect();
        let count = rows.len();
        let write = EventWrite {
            placement: Placement::Backfilled,
            events: rows,
            search: true,
            relations,
            state_groups: writes.iter().collect(),
            redactions,
            ..Default::default()
        };
        // Backfill positions come from the floor, not the events stream: nothing to complete.
        self.write_events(room_id.as_str(), vec![], write, vec![])
            .await?;
        Ok(count)
    }
}
