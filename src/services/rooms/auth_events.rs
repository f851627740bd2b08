//! An event judged by its own auth events (spec: Checks performed on receipt of a PDU, step 4):
//! the state made of the events it cites must allow it, for the state-independent rules (the
//! right auth events, none of them rejected) and for the state-dependent ones (membership,
//! power). An event that fails is rejected: stored flagged, never part of any state nor
//! served, and every event citing it among its auth events is rejected in turn. An event whose
//! auth events are not all known is not judged yet: it is left unstored, since the missing
//! events may arrive later and would make a stored rejection wrong.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, state_res, EventId, OwnedEventId,
};

use super::pdu::Pdu;

/// Why an event does not pass against its auth events.
#[derive(Debug)]
pub enum AuthFailure {
    /// Some of its auth events are unknown: no decision.
    Missing(String),
    /// Its auth events refuse it: rejected for good.
    Refused(String),
}

impl AuthFailure {
    pub fn message(self) -> String {
        match self {
            AuthFailure::Missing(m) | AuthFailure::Refused(m) => m,
        }
    }
}

/// Checks `p` against its own auth events, looked up in `known` (which carries the rejected
/// flag of stored events), and the room's create event (not cited from room version 12 on).
pub fn check_auth_events(
    rules: &RoomVersionRules,
    p: &Pdu,
    known: &HashMap<OwnedEventId, Arc<Pdu>>,
    create: Option<&Arc<Pdu>>,
) -> std::result::Result<(), AuthFailure> {
    let lookup = |id: &EventId| {
        known
            .get(id)
            .cloned()
            .or_else(|| create.filter(|c| c.event_id == id).cloned())
    };
    if let Some(missing) = p.auth_events.iter().find(|id| lookup(id).is_none()) {
        return Err(AuthFailure::Missing(format!(
            "auth event {missing} unknown"
        )));
    }
    state_res::check_state_independent_auth_rules(&rules.authorization, p, lookup)
        .map_err(AuthFailure::Refused)?;
    // The state the auth events make, with the create event (a known copy first: it carries
    // the rejected flag).
    let create = create.map(|c| known.get(&c.event_id).unwrap_or(c));
    let by_key: HashMap<(StateEventType, String), &Arc<Pdu>> = p
        .auth_events
        .iter()
        .filter_map(|id| known.get(id))
        .chain(create)
        .filter_map(|a| {
            Some((
                (
                    StateEventType::from(a.kind.to_string().as_str()),
                    a.state_key.clone()?,
                ),
                a,
            ))
        })
        .collect();
    state_res::check_state_dependent_auth_rules(&rules.authorization, p, |t, k| {
        by_key.get(&(t.clone(), k.to_owned())).map(|a| (*a).clone())
    })
    .map_err(AuthFailure::Refused)
}

/// A batch of events judged by their auth events.
pub struct Judged<T> {
    pub accepted: Vec<(Arc<Pdu>, T)>,
    pub rejected: Vec<(Arc<Pdu>, T)>,
}

/// Judges a batch of events of one room (an auth chain, a state) by their auth events, each
/// after the events of the batch it cites, whatever the order they came in: `known` holds the
/// auth events known beforehand and gains every judged event (the rejected ones flagged).
/// Events citing unknown events, or caught in a cycle, are in neither list.
pub fn judge_batch<T>(
    rules: &RoomVersionRules,
    batch: Vec<(Arc<Pdu>, T)>,
    known: &mut HashMap<OwnedEventId, Arc<Pdu>>,
    create: Option<&Arc<Pdu>>,
) -> Judged<T> {
    let index: HashMap<OwnedEventId, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.event_id.clone(), i))
        .collect();
    // From room version 12 on the create event is cited by no one but rules every event: when
    // it is in the batch, it is judged first.
    let create_in_batch = create.and_then(|c| index.get(&c.event_id).copied());
    let mut waiting = vec![0usize; batch.len()];
    let mut dependants: Vec<Vec<usize>> = vec![vec![]; batch.len()];
    for (i, (p, _)) in batch.iter().enumerate() {
        let mut deps: HashSet<usize> = p
            .auth_events
            .iter()
            .filter_map(|a| index.get(a).copied())
            .collect();
        deps.extend(create_in_batch);
        deps.remove(&i);
        waiting[i] = deps.len();
        for d in deps {
            dependants[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..batch.len()).filter(|i| waiting[*i] == 0).collect();
    let mut verdicts: Vec<Option<bool>> = vec![None; batch.len()];
    while let Some(i) = ready.pop_front() {
        let p = &batch[i].0;
        let create_now = create.map(|c| known.get(&c.event_id).unwrap_or(c).clone());
        match check_auth_events(rules, p, known, create_now.as_ref()) {
            Ok(()) => {
                known.insert(p.event_id.clone(), p.clone());
                verdicts[i] = Some(true);
            }
            Err(AuthFailure::Refused(e)) => {
                tracing::info!(event = %p.event_id, reason = %e, "event rejected by its auth events");
                known.insert(p.event_id.clone(), p.as_rejected());
                verdicts[i] = Some(false);
            }
            Err(AuthFailure::Missing(e)) => {
                tracing::info!(event = %p.event_id, reason = %e, "event left out: auth events unknown");
            }
        }
        for &d in &dependants[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push_back(d);
            }
        }
    }
    let mut out = Judged {
        accepted: vec![],
        rejected: vec![],
    };
    for ((p, t), v) in batch.into_iter().zip(verdicts) {
        match v {
            Some(true) => out.accepted.push((p, t)),
            Some(false) => out.rejected.push((p.as_rejected(), t)),
            None => {}
        }
    }
    out
}
