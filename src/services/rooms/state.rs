//! A room's state as the rooms area keeps it: state keys, state maps, the in-memory view of a
//! room behind its lock, and the state groups a persist writes. Plain data, no calls back into
//! the services: the policy reads these types too.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomVersionId,
};

use super::pdu::Pdu;

/// A full state snapshot is written after this many deltas.
const MAX_DELTA_CHAIN: i64 = 32;

pub type StateKey = (StateEventType, String);
/// Current-state entries set by state resolution (None: the entry is gone).
pub type StateDiff = Vec<(StateKey, Option<Arc<Pdu>>)>;

/// The in-memory view of a room, valid while its lock is held.
pub struct RoomState {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub state: HashMap<StateKey, Arc<Pdu>>,
    pub extremities: Vec<OwnedEventId>,
    pub depth: u64,
    pub state_group: Option<i64>,
    pub chain_len: i64,
    /// Local users joined or invited: whom to wake when the room changes.
    pub local_members: HashSet<OwnedUserId>,
    /// (sender, device, txn_id) of recent local events, for idempotent retries.
    pub recent_txns: HashMap<(OwnedUserId, String, String), OwnedEventId>,
    /// Events are stamped no earlier than this (room creation retries after an id clash).
    pub min_ts: i64,
    /// Current-state changes decided by state resolution, written by the next persist: per
    /// event of the batch, the entries it sets (None: the entry is gone). An event listed here
    /// changes the current state only through its list (possibly empty).
    pub resolved: Vec<(OwnedEventId, StateDiff)>,
    /// State groups written by the next persist besides the events' own (resolved states).
    pub extra_groups: Vec<GroupWrite>,
}

/// A room state in memory: (type, state_key) -> event.
pub type State = HashMap<StateKey, Arc<Pdu>>;

/// A new state group: id, the group it is a delta on (None: a full snapshot), the delta chain
/// length, and its (type, state_key, event_id) entries.
pub struct GroupWrite {
    pub id: i64,
    pub prev: Option<i64>,
    pub chain_len: i64,
    pub entries: Vec<(String, String, String)>,
}

/// A state as (type, state_key, event_id) rows.
pub fn state_entries(state: &HashMap<StateKey, Arc<Pdu>>) -> Vec<(String, String, String)> {
    state
        .iter()
        .map(|((t, k), p)| (t.to_string(), k.clone(), p.event_id.to_string()))
        .collect()
}

impl GroupWrite {
    /// Group `id`, the state `after` an event: a delta holding the event's entry (`change`) on
    /// `prev` = (group, its delta chain length) while the chain is short, else a full snapshot.
    pub fn after(
        id: i64,
        prev: Option<(i64, i64)>,
        change: Option<(&StateKey, &Pdu)>,
        after: &HashMap<StateKey, Arc<Pdu>>,
    ) -> GroupWrite {
        match (prev, change) {
            (Some((g, len)), Some((k, p))) if len < MAX_DELTA_CHAIN => GroupWrite {
                id,
                prev: Some(g),
                chain_len: len + 1,
                entries: vec![(k.0.to_string(), k.1.clone(), p.event_id.to_string())],
            },
            _ => GroupWrite {
                id,
                prev: None,
                chain_len: 0,
                entries: state_entries(after),
            },
        }
    }
}
