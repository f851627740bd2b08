//! Events from other servers (spec: Checks performed on receipt of a PDU, steps 4–6): each is
//! authorised against its auth events and against the state before it, then soft-failed if the
//! current state refuses it; accepted events join the room like local ones, under the room lock.
//!
//! The state before an event is the current state when its prev events are exactly the room's
//! forward extremities; otherwise it is the state after its prev event, or the resolution (state
//! resolution v2, `resolve.rs`) of the states after its prev events when there are several.
//! When an accepted event leaves the forward extremities forked, the current state becomes the
//! resolution of the states after every extremity: every server holding the same events
//! reaches the same current state.

use crate::services::rooms::RoomsFace;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{events::StateEventType, state_res, OwnedEventId, RoomId};

use super::{
    auth_events::{check_auth_events, AuthFailure},
    pdu::Pdu,
    resolve::{same_states, State},
    GroupWrite, NewPdu, RoomGuard, RoomState, StateKey,
};
use crate::{
    services::{rooms::federation_port::CheckedPdu, Services},
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

fn key_of(pdu: &Pdu) -> Option<StateKey> {
    pdu.state_key.as_ref().map(|k| {
        (
            StateEventType::from(pdu.kind.to_string().as_str()),
            k.clone(),
        )
    })
}

/// A full snapshot of a state as group entries.
impl RoomsFace<'_> {
    /// Events by id, as PDUs (from the database), rejected ones flagged: an auth event that was
    /// rejected makes what cites it rejected (ruma's auth rules read the flag).
    pub(crate) async fn load_pdus(self, ids: &[String]) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
        let rows = self.db.get_events_chunked_with_rejected(ids).await?;
        let mut out = HashMap::new();
        for r in rows {
            if let Ok(p) = Pdu::from_row(&r) {
                out.insert(p.event_id.clone(), p);
            }
        }
        Ok(out)
    }

    /// The create event of a room known here (from its current state).
    pub(crate) async fn room_create_pdu(self, room_id: &RoomId) -> Result<Option<Arc<Pdu>>> {
        Ok(self
            .db
            .current_state_event(room_id.as_str(), "m.room.create", "")
            .await?
            .and_then(|r| Pdu::parse(&r.event_id, &r.json).ok()))
    }

    /// The states of some state groups, as events (one query for the entries, one for the
    /// events).
    pub(crate) async fn states_of_groups(self, groups: &[i64]) -> Result<HashMap<i64, State>> {
        let ids_by_group = self.db.state_at_groups(groups, None).await?;
        let mut ids: Vec<String> = ids_by_group
            .values()
            .flat_map(|s| s.values().cloned())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let pdus = self.load_pdus(&ids).await?;
        Ok(ids_by_group
            .into_iter()
            .map(|(g, s)| {
                let state = s
                    .into_iter()
                    .filter_map(|((t, k), id)| {
                        let p = ruma::EventId::parse(&id).ok().and_then(|e| pdus.get(&e))?;
                        Some(((StateEventType::from(t.as_str()), k), p.clone()))
                    })
                    .collect();
                (g, state)
            })
            .collect())
    }

    /// The state after each of these events (those known with a place in the DAG), resolved
    /// into one; with the group holding it when a single group does. None when none of them
    /// has a known state.
    async fn resolved_after(
        self,
        room: &RoomState,
        events: &[String],
        extra: Option<&State>,
    ) -> Result<Option<(State, Option<i64>)>> {
        let mut groups: Vec<i64> = self
            .db
            .event_places(events)
            .await?
            .into_iter()
            .filter(|p| !p.outlier && p.room_id == room.room_id.as_str())
            .filter_map(|p| p.state_group.filter(|g| *g > 0))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() && extra.is_none() {
            return Ok(None);
        }
        let states = self.states_of_groups(&groups).await?;
        if extra.is_none() && groups.len() == 1 {
            let g = groups[0];
            return Ok(states.get(&g).map(|s| (s.clone(), Some(g))));
        }
        let mut all: Vec<&State> = states.values().collect();
        all.extend(extra);
        let resolved = self.resolve_states(&room.rules, &all).await?;
        Ok(Some((resolved, None)))
    }

    /// Authorises and stores PDUs of one room, in order. Unknown rooms are refused.
    pub async fn accept_remote_pdus(
        self,
        room_id: &RoomId,
        pdus: Vec<CheckedPdu>,
    ) -> Result<Vec<(OwnedEventId, Outcome)>> {
        self.accept_remote_pdus_with(room_id, pdus, HashMap::new())
            .await
    }

    /// [`Self::accept_remote_pdus`], where the state before some events is given (fetched from
    /// another server when their prev events cannot be had): those are taken without their
    /// prev events.
    pub async fn accept_remote_pdus_with(
        self,
        room_id: &RoomId,
        pdus: Vec<CheckedPdu>,
        supplied: HashMap<OwnedEventId, State>,
    ) -> Result<Vec<(OwnedEventId, Outcome)>> {
        let mut guard = self.lock_room(room_id).await?;
        if guard.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        let res = self
            .accept_locked(&mut guard, room_id, pdus, supplied)
            .await;
        if res.is_err() {
            // Resolution results may be half-applied to the cached state: reload it next time.
            *guard = None;
        }
        res
    }

    async fn accept_locked(
        self,
        guard: &mut RoomGuard,
        room_id: &RoomId,
        pdus: Vec<CheckedPdu>,
        supplied: HashMap<OwnedEventId, State>,
    ) -> Result<Vec<(OwnedEventId, Outcome)>> {
        let mut r = self.receipt_of(room_id, &pdus, supplied).await?;
        let mut out = vec![];
        for c in pdus {
            let id = c.event_id.clone();
            let outcome = self.accept_one(guard, room_id, &mut r, c).await?;
            out.push((id, outcome));
        }
        if !r.built.is_empty() {
            self.persist(guard, r.built, None).await?;
        }
        Ok(out)
    }

    /// Receipt, before the checks: what the database knows of the batch's events and of the
    /// prev events they cite (one query each for the batch).
    async fn receipt_of(
        self,
        room_id: &RoomId,
        pdus: &[CheckedPdu],
        supplied: HashMap<OwnedEventId, State>,
    ) -> Result<Receipt> {
        let ids: Vec<String> = pdus.iter().map(|c| c.event_id.to_string()).collect();
        // Known events: taken already, or rejected (then rejected again, unchanged).
        let (known_rejected, known): (Vec<_>, Vec<_>) = self
            .db
            .get_events_with_rejected(&ids)
            .await?
            .into_iter()
            .partition(|r| r.is_rejected());
        let known: HashSet<String> = known.into_iter().map(|r| r.event_id).collect();
        let known_rejected: HashSet<String> =
            known_rejected.into_iter().map(|r| r.event_id).collect();
        // The prev events the batch refers to, known here with their place in the DAG (not
        // outliers): one query for the batch.
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
        let places = self.db.event_places(&prev_ids).await?;
        // Prev events of another room: an event citing one is refused (its place in this
        // room's graph would be made of another room's history).
        let foreign_prevs: HashSet<String> = places
            .iter()
            .filter(|p| p.room_id != room_id.as_str())
            .map(|p| p.event_id.clone())
            .collect();
        let known_prevs: HashSet<String> = places
            .into_iter()
            .filter(|p| !p.outlier && p.room_id == room_id.as_str())
            .map(|p| p.event_id)
            .collect();
        Ok(Receipt {
            known,
            known_rejected,
            foreign_prevs,
            known_prevs,
            supplied,
            built: vec![],
        })
    }

    /// One PDU of the batch through the checks on receipt: its format and room, its prev
    /// events, the state before it, its auth (steps 4 and 5), then soft-fail against the
    /// current state (step 6); accepted events are applied to the room (built, persisted with
    /// the batch).
    async fn accept_one(
        self,
        guard: &mut RoomGuard,
        room_id: &RoomId,
        r: &mut Receipt,
        c: CheckedPdu,
    ) -> Result<Outcome> {
        let pdu = match r.admissible(room_id, &c) {
            Ok(p) => p,
            Err(o) => return Ok(o),
        };
        let given = r.supplied.remove(&c.event_id);
        // Prev events must be known (the caller fetches missing ones), unless the state
        // before the event was given.
        if given.is_none() {
            if let Some(o) = r.missing_prevs(&pdu) {
                return Ok(o);
            }
        }
        let extends = {
            let room = guard
                .as_ref()
                .ok_or_else(|| Error::unknown("room state missing"))?;
            let prevs: HashSet<&OwnedEventId> = pdu.prev_events.iter().collect();
            let ext: HashSet<&OwnedEventId> = room.extremities.iter().collect();
            given.is_none() && prevs == ext
        };
        if !extends && !r.built.is_empty() {
            // The states of earlier events of the batch are read from the database below.
            for n in &r.built {
                r.known_prevs.insert(n.pdu.event_id.to_string());
            }
            self.persist(guard, std::mem::take(&mut r.built), None)
                .await?;
        }
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::unknown("room state missing"))?;
        // The state before the event: None means the current state.
        let before: Option<(State, Option<i64>)> = if extends {
            None
        } else if let Some(s) = given {
            Some((s, None))
        } else {
            let prevs: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
            match self.resolved_after(room, &prevs, None).await? {
                Some(b) => Some(b),
                None => return Ok(Outcome::MissingPrevs(pdu.prev_events.clone())),
            }
        };
        let before_state = before.as_ref().map(|(s, _)| s).unwrap_or(&room.state);
        match self
            .auth_on_receipt(room, &r.built, &pdu, before_state)
            .await?
        {
            Ok(()) => {}
            Err(AuthFailure::Missing(e)) => return Ok(Outcome::Rejected(e)),
            Err(AuthFailure::Refused(e)) => {
                // Kept known, flagged rejected: never in the state nor the timeline.
                let room_id = room.room_id.clone();
                self.write_outliers(&room_id, &[(pdu, c.json)], true)
                    .await?;
                return Ok(Outcome::Rejected(e));
            }
        }
        // Step 6: soft-fail when the current state refuses it.
        let soft = !extends
            && state_res::check_state_dependent_auth_rules(
                &room.rules.authorization,
                &*pdu,
                |t, k| room.state.get(&(t.clone(), k.to_owned())).cloned(),
            )
            .is_err();
        let n = match before {
            None => room.apply_extending(self.s, pdu, c.json),
            Some((state, group)) => {
                self.apply_fork(room, pdu, c.json, state, group, soft)
                    .await?
            }
        };
        r.built.push(n);
        Ok(if soft {
            Outcome::SoftFailed
        } else {
            Outcome::Accepted
        })
    }

    /// Steps 4 and 5: the state made of its own auth events must allow the event (auth events
    /// from the database, or the batch), then the state before it, then the access rules.
    /// `Missing`: no decision; `Refused`: rejected for good.
    async fn auth_on_receipt(
        self,
        room: &RoomState,
        built: &[NewPdu],
        pdu: &Arc<Pdu>,
        before_state: &State,
    ) -> Result<std::result::Result<(), AuthFailure>> {
        // Auth events: from the database (or the batch, persisted by now when needed).
        let auth_ids: Vec<String> = pdu.auth_events.iter().map(|e| e.to_string()).collect();
        let mut auth = self.load_pdus(&auth_ids).await?;
        for n in built {
            auth.insert(n.pdu.event_id.clone(), n.pdu.clone());
        }
        let create = room.get(StateEventType::RoomCreate, "").cloned();
        let rules = &room.rules.authorization;
        // Step 4: the state made of its own auth events must allow it.
        match check_auth_events(&room.rules, pdu, &auth, create.as_ref()) {
            Ok(()) => {}
            Err(AuthFailure::Missing(e)) => return Ok(Err(AuthFailure::Missing(e))),
            Err(AuthFailure::Refused(e)) => {
                tracing::info!(event = %pdu.event_id, reason = %e, "event rejected by its auth events");
                return Ok(Err(AuthFailure::Refused(e)));
            }
        }
        // Step 5: the state before it must allow it too.
        let refused = state_res::check_state_dependent_auth_rules(rules, &**pdu, |t, k| {
            before_state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .err()
        // Tchap access rules: the same pure check every server of the federation makes.
        .or_else(|| {
            crate::services::policy::access_rules::check(&self.policy_rules, before_state, pdu)
                .err()
                .inspect(|e| {
                    tracing::info!(event = %pdu.event_id, reason = %e, "event rejected by the access rules")
                })
        });
        Ok(match refused {
            Some(e) => Err(AuthFailure::Refused(e)),
            None => Ok(()),
        })
    }

    /// Applies an authorised event that does not extend every forward extremity: its own state
    /// group (the state after it), then, unless soft-failed, the new extremities and the
    /// current state resolved from the states after each of them.
    async fn apply_fork(
        self,
        room: &mut RoomState,
        pdu: Arc<Pdu>,
        json: String,
        before: State,
        before_group: Option<i64>,
        soft_failed: bool,
    ) -> Result<NewPdu> {
        let next_id = || self.state_group_ids.next();
        // The state after the event.
        let mut after = before;
        let (after_group, group_write) = match (key_of(&pdu), before_group) {
            (Some(key), prev) => {
                after.insert(key.clone(), pdu.clone());
                let id = next_id();
                let chain = match prev {
                    Some(g) => Some((g, self.db.state_group_chain_len(g).await?)),
                    None => None,
                };
                let write = GroupWrite::after(id, chain, Some((&key, &pdu)), &after);
                (id, Some(write))
            }
            (None, Some(g)) => (g, None),
            (None, None) => {
                let id = next_id();
                (id, Some(GroupWrite::after(id, None, None, &after)))
            }
        };
        if !soft_failed {
            let prevs: HashSet<&OwnedEventId> = pdu.prev_events.iter().collect();
            // A message on top of one extremity leaves the set of extremity states as it was.
            let unchanged = pdu.state_key.is_none()
                && pdu.prev_events.len() == 1
                && room.extremities.contains(&pdu.prev_events[0]);
            room.extremities.retain(|e| !prevs.contains(e));
            let mut diff = vec![];
            if !unchanged {
                let others: Vec<String> = room.extremities.iter().map(|e| e.to_string()).collect();
                let resolved = match self.resolved_after(room, &others, Some(&after)).await? {
                    Some((s, _)) => s,
                    None => after.clone(),
                };
                if !same_states(&[&resolved, &room.state]) {
                    for (k, p) in &resolved {
                        if room.state.get(k).is_none_or(|q| q.event_id != p.event_id) {
                            diff.push((k.clone(), Some(p.clone())));
                        }
                    }
                    for k in room.state.keys() {
                        if !resolved.contains_key(k) {
                            diff.push((k.clone(), None));
                        }
                    }
                    room.apply_resolved(self.s, &diff, resolved);
                    if same_states(&[&room.state, &after]) {
                        room.state_group = Some(after_group);
                        room.chain_len = match &group_write {
                            Some(g) => g.chain_len,
                            None => self.db.state_group_chain_len(after_group).await?,
                        };
                    } else {
                        let id = next_id();
                        room.extra_groups.push(GroupWrite {
                            id,
                            prev: None,
                            chain_len: 0,
                            entries: room.snapshot(),
                        });
                        room.state_group = Some(id);
                        room.chain_len = 0;
                    }
                }
            }
            room.resolved.push((pdu.event_id.clone(), diff));
            room.extremities.push(pdu.event_id.clone());
            room.depth = room.depth.max(pdu.depth);
        }
        Ok(NewPdu {
            state_group: after_group,
            pdu,
            json,
            group_write,
            device: None,
            txn: None,
            txn_key: None,
            soft_failed,
        })
    }
}

impl RoomState {
    /// Applies an authorised remote event whose prev events are the forward extremities: it
    /// moves the room on like a local event.
    fn apply_extending(&mut self, srv: &Services, pdu: Arc<Pdu>, json: String) -> NewPdu {
        let group_write = pdu.state_key.is_some().then(|| self.push_state(srv, &pdu));
        self.extremities = vec![pdu.event_id.clone()];
        self.depth = self.depth.max(pdu.depth);
        NewPdu {
            state_group: self.state_group.unwrap_or(0),
            pdu,
            json,
            group_write,
            device: None,
            txn: None,
            txn_key: None,
            soft_failed: false,
        }
    }

    /// Makes a resolved state the current state (the local members follow).
    fn apply_resolved(
        &mut self,
        srv: &Services,
        diff: &[(StateKey, Option<Arc<Pdu>>)],
        resolved: State,
    ) {
        for ((t, k), p) in diff {
            if *t != StateEventType::RoomMember {
                continue;
            }
            let Ok(user) = ruma::UserId::parse(k.as_str()) else {
                continue;
            };
            if !srv.is_local(&user) {
                continue;
            }
            if p.as_ref().is_some_and(|p| p.joined_or_invited()) {
                self.local_members.insert(user);
            } else {
                self.local_members.remove(&user);
            }
        }
        self.state = resolved;
    }
}

/// A batch of PDUs on receipt: what is known of them and of their prev events, the states
/// given before some, and the events accepted so far (not yet persisted).
struct Receipt {
    known: HashSet<String>,
    known_rejected: HashSet<String>,
    foreign_prevs: HashSet<String>,
    known_prevs: HashSet<String>,
    supplied: HashMap<OwnedEventId, State>,
    built: Vec<NewPdu>,
}

impl Receipt {
    /// Receipt, the format and room checks: known events (rejected again, or already known),
    /// a PDU that does not parse, of another room, or citing prev events of another room.
    fn admissible(
        &self,
        room_id: &RoomId,
        c: &CheckedPdu,
    ) -> std::result::Result<Arc<Pdu>, Outcome> {
        if self.known_rejected.contains(c.event_id.as_str()) {
            return Err(Outcome::Rejected("event rejected earlier".into()));
        }
        if self.known.contains(c.event_id.as_str())
            || self.built.iter().any(|n| n.pdu.event_id == c.event_id)
        {
            return Err(Outcome::AlreadyKnown);
        }
        let pdu = Pdu::parse(c.event_id.as_str(), &c.json).map_err(Outcome::Rejected)?;
        if pdu.room_id.as_deref() != Some(room_id)
            && pdu.kind != ruma::events::TimelineEventType::RoomCreate
        {
            return Err(Outcome::Rejected("wrong room".into()));
        }
        if let Some(p) = pdu
            .prev_events
            .iter()
            .find(|p| self.foreign_prevs.contains(p.as_str()))
        {
            tracing::info!(event = %c.event_id, prev = %p, "prev event of another room: event refused");
            return Err(Outcome::Rejected(format!(
                "prev event {p} is of another room"
            )));
        }
        Ok(pdu)
    }

    /// Receipt, the prev events: those neither known here nor earlier in the batch (also when
    /// the event cites none), as the outcome asking the caller to fetch them.
    fn missing_prevs(&self, pdu: &Pdu) -> Option<Outcome> {
        let missing: Vec<OwnedEventId> = pdu
            .prev_events
            .iter()
            .filter(|p| {
                !self.known_prevs.contains(p.as_str())
                    && !self.built.iter().any(|n| n.pdu.event_id == **p)
            })
            .cloned()
            .collect();
        (!missing.is_empty() || pdu.prev_events.is_empty())
            .then_some(Outcome::MissingPrevs(missing))
    }
}
