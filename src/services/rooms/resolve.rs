//! State resolution (room versions 2+, ruma's `state_res::resolve`): the state before an event
//! whose prev events disagree, and the current state of a room whose forward extremities fork.
//!
//! What ruma needs is read from the database in a fixed number of queries whatever the size of
//! the chains: the auth edges of every event of the states (one recursive query), then the
//! events of the conflicted events' auth chains that are not already in memory (one query).
//! The auth chains handed to ruma leave out what every state shares (the auth chain of the
//! unconflicted state is in every state's chain, so it never counts in the auth difference):
//! the result is the spec's, and the sets stay small.

use crate::services::rooms::RoomsFace;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    room_version_rules::{RoomVersionRules, StateResolutionVersion},
    state_res::{self, utils::event_id_set::EventIdSet, StateMap},
    EventId, OwnedEventId,
};

use super::{pdu::Pdu, StateKey};
use crate::{store::dag::adjacency, Error, Result};

pub use super::state::State;

/// Whether the states all hold the same events.
pub fn same_states(states: &[&State]) -> bool {
    let Some(first) = states.first() else {
        return true;
    };
    states.iter().skip(1).all(|s| {
        s.len() == first.len()
            && s.iter()
                .all(|(k, p)| first.get(k).is_some_and(|q| q.event_id == p.event_id))
    })
}

/// Every node reachable from `seeds` through `edges` (the seeds only when reached again),
/// not going through `stop`.
fn reachable(
    seeds: impl IntoIterator<Item = String>,
    edges: &HashMap<String, Vec<String>>,
    stop: &HashSet<String>,
) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut todo: Vec<String> = seeds
        .into_iter()
        .flat_map(|s| edges.get(&s).cloned().unwrap_or_default())
        .collect();
    while let Some(id) = todo.pop() {
        if stop.contains(&id) || !out.insert(id.clone()) {
            continue;
        }
        if let Some(next) = edges.get(&id) {
            todo.extend(next.iter().filter(|n| !out.contains(*n)).cloned());
        }
    }
    out
}

/// The conflicted state subgraph (room version 12): the events on auth paths from one
/// conflicted event to another (both ends included).
fn conflicted_subgraph(
    conflicted: &HashSet<String>,
    edges: &HashMap<String, Vec<String>>,
) -> HashSet<String> {
    let mut below = reachable(conflicted.iter().cloned(), edges, &HashSet::new());
    below.extend(conflicted.iter().cloned());
    // Which of them lead (through auth events) to a conflicted event: a memoised walk, written
    // iteratively (auth chains can be long).
    let mut leads: HashMap<String, bool> = HashMap::new();
    for start in &below {
        let mut stack: Vec<(String, bool)> = vec![(start.clone(), false)];
        while let Some((id, expanded)) = stack.pop() {
            if leads.contains_key(&id) {
                continue;
            }
            let next = edges.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            if expanded {
                let r = next
                    .iter()
                    .any(|n| conflicted.contains(n) || leads.get(n).copied().unwrap_or(false));
                leads.insert(id, r);
            } else {
                stack.push((id.clone(), true));
                for n in next {
                    if !leads.contains_key(n) {
                        stack.push((n.clone(), false));
                    }
                }
            }
        }
    }
    below
        .into_iter()
        .filter(|id| conflicted.contains(id) || leads.get(id).copied().unwrap_or(false))
        .collect()
}

impl RoomsFace<'_> {
    /// Resolves several states of a room into one (state resolution v2).
    pub async fn resolve_states(
        self,
        rules: &RoomVersionRules,
        states: &[&State],
    ) -> Result<State> {
        if states.len() <= 1 || same_states(states) {
            return Ok(states.first().map(|s| (*s).clone()).unwrap_or_default());
        }
        let StateResolutionVersion::V2(res_rules) = &rules.state_res else {
            return Err(Error::unknown("Unsupported state resolution version"));
        };
        // Every event of the states, and which are conflicted.
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let keys: HashSet<&StateKey> = states.iter().flat_map(|s| s.keys()).collect();
        let mut conflicted: HashSet<String> = HashSet::new();
        let mut unconflicted: Vec<String> = vec![];
        for k in keys {
            let ids: Vec<Option<&Arc<Pdu>>> = states.iter().map(|s| s.get(k)).collect();
            let first = ids[0].map(|p| &p.event_id);
            let agree = first.is_some() && ids.iter().all(|p| p.map(|p| &p.event_id) == first);
            for p in ids.into_iter().flatten() {
                events.insert(p.event_id.clone(), p.clone());
                if agree {
                    continue;
                }
                conflicted.insert(p.event_id.to_string());
            }
            if agree {
                unconflicted.extend(first.map(|e| e.to_string()));
            }
        }
        let seeds: Vec<String> = events.keys().map(|e| e.to_string()).collect();
        let edges = adjacency(self.db.auth_chain_edges(&seeds).await?);
        // The auth chain shared by every state (that of the unconflicted state), then each
        // state's own part beyond it.
        let shared = reachable(unconflicted.iter().cloned(), &edges, &HashSet::new());
        let parse = |s: &String| EventId::parse(s.as_str()).ok();
        let chains: Vec<EventIdSet<OwnedEventId>> = states
            .iter()
            .map(|s| {
                let seeds = s
                    .values()
                    .map(|p| p.event_id.to_string())
                    .filter(|id| conflicted.contains(id));
                reachable(seeds, &edges, &shared)
                    .iter()
                    .filter_map(parse)
                    .collect()
            })
            .collect();
        // Load the conflicted events' whole auth chains (ruma walks them).
        let mut wanted = reachable(conflicted.iter().cloned(), &edges, &HashSet::new());
        let subgraph = if res_rules.consider_conflicted_state_subgraph {
            let g = conflicted_subgraph(&conflicted, &edges);
            wanted.extend(g.iter().cloned());
            Some(g)
        } else {
            None
        };
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|id| parse(id).is_none_or(|e| !events.contains_key(&e)))
            .collect();
        // Rejected events are read with their flag: the iterative auth checks skip them.
        for row in self.db.get_events_chunked_with_rejected(&missing).await? {
            if let Ok(p) = Pdu::from_row(&row) {
                events.insert(p.event_id.clone(), p);
            }
        }
        let maps: Vec<StateMap<OwnedEventId>> = states
            .iter()
            .map(|s| {
                s.iter()
                    .map(|(k, p)| (k.clone(), p.event_id.clone()))
                    .collect()
            })
            .collect();
        let subgraph: Option<EventIdSet<OwnedEventId>> =
            subgraph.map(|g| g.iter().filter_map(parse).collect());
        let resolved = state_res::resolve(
            &rules.authorization,
            res_rules,
            maps.iter(),
            chains,
            |id| events.get(id).cloned(),
            |_| subgraph.clone(),
        )
        .map_err(|e| Error::unknown(format!("state resolution failed: {e}")))?;
        Ok(resolved
            .into_iter()
            .filter_map(|(k, id)| events.get(&id).map(|p| (k, p.clone())))
            .collect())
    }
}
