//! Events from other servers (spec: Checks performed on receipt of a PDU, steps 4–6): each is
//! authorised against its auth events and against the state before it, then soft-failed if the
//! current state refuses it; accepted events join the room like local ones, under the room lock.
//!
//! The state before an event is the current state when the event extends our extremities, and
//! the state after its prev event otherwise. Forks with several differing prev states are merged
//! without state resolution for now (the later event of the fork wins): see
//! docs/architecture.md.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{events::StateEventType, state_res, OwnedEventId, RoomId};

use super::{pdu::Pdu, GroupWrite, NewPdu, RoomState, StateKey};
use crate::{
    services::{federation::pdu::CheckedPdu, Services},
    Error, Result,
};

/// What happened to one incoming PDU.
pub enum Outcome {
    Accepted,
    AlreadyKnown,
    SoftFailed,
    Rejected(String),
    /// Its prev events are unknown here.
    MissingPrevs(Vec<OwnedEventId>),
}

type State = HashMap<StateKey, Arc<Pdu>>;

impl Services {
    /// Events by id, as PDUs (from the database).
    async fn load_pdus(&self, ids: &[String]) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
        let rows = self.db.get_events(ids).await?;
        let mut out = HashMap::new();
        for r in rows {
            if let Ok(p) = Pdu::parse(&r.event_id, &r.json) {
                out.insert(p.event_id.clone(), p);
            }
        }
        Ok(out)
    }

    /// The state before an event whose prev events are all known.
    async fn state_before(
        &self,
        room: &RoomState,
        pdu: &Pdu,
        batch: &[NewPdu],
    ) -> Result<(State, bool)> {
        let extremities: HashSet<&OwnedEventId> = room.extremities.iter().collect();
        if !pdu.prev_events.is_empty() && pdu.prev_events.iter().all(|p| extremities.contains(p)) {
            return Ok((room.state.clone(), true));
        }
        // The state after each prev event.
        let mut groups = vec![];
        let prev_ids: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
        for p in &pdu.prev_events {
            if let Some(n) = batch.iter().find(|n| n.pdu.event_id == *p) {
                groups.push(n.state_group);
            }
        }
        for row in self.db.get_events(&prev_ids).await? {
            if let Some(g) = row.state_group {
                groups.push(g);
            }
        }
        groups.sort_unstable();
        groups.dedup();
        let states = self.db.state_at_groups(&groups, None).await?;
        let mut merged: HashMap<(String, String), String> = HashMap::new();
        for g in &groups {
            if let Some(s) = states.get(g) {
                merged.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let ids: Vec<String> = merged.values().cloned().collect();
        let pdus = self.load_pdus(&ids).await?;
        let mut state = State::new();
        for ((t, k), id) in merged {
            if let Some(p) = ruma::EventId::parse(&id).ok().and_then(|e| pdus.get(&e)) {
                state.insert((StateEventType::from(t.as_str()), k), p.clone());
            }
        }
        Ok((state, false))
    }

    /// Authorises and stores PDUs of one room, in order. Unknown rooms are refused.
    pub async fn accept_remote_pdus(
        &self,
        room_id: &RoomId,
        pdus: Vec<CheckedPdu>,
    ) -> Result<Vec<(OwnedEventId, Outcome)>> {
        let mut guard = self.lock_room(room_id).await?;
        let mut built: Vec<NewPdu> = vec![];
        let mut out = vec![];
        {
            let room = guard
                .as_mut()
                .ok_or_else(|| Error::not_found("Unknown room"))?;
            let ids: Vec<String> = pdus.iter().map(|c| c.event_id.to_string()).collect();
            let known: HashSet<String> = self
                .db
                .get_events(&ids)
                .await?
                .into_iter()
                .map(|r| r.event_id)
                .collect();
            // The prev events the batch refers to, known here: one query for the batch.
            let prev_ids: Vec<String> = pdus
                .iter()
                .filter_map(|c| c.object.get("prev_events"))
                .filter_map(|v| match v {
                    ruma::CanonicalJsonValue::Array(a) => Some(a),
                    _ => None,
                })
                .flatten()
                .filter_map(|v| match v {
                    ruma::CanonicalJsonValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            let known_prevs: HashSet<String> = self
                .db
                .get_events(&prev_ids)
                .await?
                .into_iter()
                .map(|r| r.event_id)
                .collect();
            for c in pdus {
                if known.contains(c.event_id.as_str())
                    || built.iter().any(|n| n.pdu.event_id == c.event_id)
                {
                    out.push((c.event_id, Outcome::AlreadyKnown));
                    continue;
                }
                let pdu = match Pdu::parse(c.event_id.as_str(), &c.json) {
                    Ok(p) => p,
                    Err(e) => {
                        out.push((c.event_id, Outcome::Rejected(e)));
                        continue;
                    }
                };
                if pdu.room_id.as_deref() != Some(room_id)
                    && pdu.kind != ruma::events::TimelineEventType::RoomCreate
                {
                    out.push((c.event_id, Outcome::Rejected("wrong room".into())));
                    continue;
                }
                // Prev events must be known (the caller fetches missing ones).
                let missing: Vec<OwnedEventId> = pdu
                    .prev_events
                    .iter()
                    .filter(|p| {
                        !known_prevs.contains(p.as_str())
                            && !built.iter().any(|n| n.pdu.event_id == **p)
                    })
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    out.push((c.event_id, Outcome::MissingPrevs(missing)));
                    continue;
                }
                let (before, extends) = self.state_before(room, &pdu, &built).await?;
                // Auth events: from the batch or the database.
                let auth_ids: Vec<String> = pdu.auth_events.iter().map(|e| e.to_string()).collect();
                let mut auth = self.load_pdus(&auth_ids).await?;
                for n in &built {
                    auth.insert(n.pdu.event_id.clone(), n.pdu.clone());
                }
                if let Some(create) = room.get("m.room.create", "") {
                    auth.insert(create.event_id.clone(), create.clone());
                }
                let rules = &room.rules.authorization;
                if let Err(e) = state_res::check_state_independent_auth_rules(rules, &*pdu, |id| {
                    auth.get(id).cloned()
                }) {
                    out.push((c.event_id, Outcome::Rejected(e)));
                    continue;
                }
                if let Err(e) = state_res::check_state_dependent_auth_rules(rules, &*pdu, |t, k| {
                    before.get(&(t.clone(), k.to_owned())).cloned()
                }) {
                    out.push((c.event_id, Outcome::Rejected(e)));
                    continue;
                }
                let soft = !extends
                    && state_res::check_state_dependent_auth_rules(rules, &*pdu, |t, k| {
                        room.state.get(&(t.clone(), k.to_owned())).cloned()
                    })
                    .is_err();
                let n = room.apply_remote(self, pdu, c.json, &before, extends, soft);
                out.push((
                    c.event_id,
                    if soft {
                        Outcome::SoftFailed
                    } else {
                        Outcome::Accepted
                    },
                ));
                built.push(n);
            }
        }
        if !built.is_empty() {
            self.persist(&mut guard, built, None).await?;
        }
        Ok(out)
    }
}

impl RoomState {
    /// Applies an authorised remote event to the room (current state, extremities, depth).
    fn apply_remote(
        &mut self,
        srv: &Services,
        pdu: Arc<Pdu>,
        json: String,
        before: &State,
        extends: bool,
        soft_failed: bool,
    ) -> NewPdu {
        let mut group_write = None;
        if !soft_failed {
            if pdu.state_key.is_some() {
                if extends {
                    group_write = Some(self.push_state(srv, &pdu));
                } else {
                    // A fork: the state after the event is a full snapshot of its own branch;
                    // the current state takes the event too (the later event wins).
                    let mut branch = before.clone();
                    let key = (
                        StateEventType::from(pdu.kind.to_string().as_str()),
                        pdu.state_key.clone().unwrap_or_default(),
                    );
                    branch.insert(key, pdu.clone());
                    let current = self.push_state(srv, &pdu);
                    let id = current.id;
                    group_write = Some(GroupWrite {
                        id,
                        prev: None,
                        chain_len: 0,
                        entries: branch
                            .iter()
                            .map(|((t, k), p)| (t.to_string(), k.clone(), p.event_id.to_string()))
                            .collect(),
                    });
                    // The next delta must build on the merged current state, not the branch.
                    self.chain_len = super::MAX_DELTA_CHAIN;
                }
            }
            let prevs: HashSet<&OwnedEventId> = pdu.prev_events.iter().collect();
            self.extremities.retain(|e| !prevs.contains(e));
            self.extremities.push(pdu.event_id.clone());
            self.depth = self.depth.max(pdu.depth);
        }
        NewPdu {
            state_group: self.state_group.unwrap_or(0),
            pdu,
            json,
            group_write,
            device: None,
            txn: None,
            txn_key: None,
            soft_failed,
        }
    }
}
