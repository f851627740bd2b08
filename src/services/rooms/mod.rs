//! Rooms: the event DAG. Builds, signs and authorises events against the room state, persists
//! them with their state snapshot, and keeps each room's current state in memory behind a
//! per-room lock (the lock also serialises local writes so prev_events are the extremities).

crate::services::face!(
    /// The face of rooms: the event DAG, sending, reading, membership, the room directory.
    RoomsFace
);

pub mod relations;
pub mod reports;
pub mod search;
pub mod server_notices;
pub mod spaces;

pub mod auth_events;
pub mod backfill;
pub mod client_event;
pub mod create;
pub mod directory;
pub mod federation_port;
pub mod member_changes;
pub mod pdu;
pub mod read;
pub mod redactions;
pub mod remote;
pub mod requests;
pub mod resolve;
pub mod send;
pub mod signing;
pub mod state;
pub mod store_events;
pub mod upgrade;
pub mod version;
pub mod visibility;
pub mod writer;

// What other areas use of the rooms area's inner files (its door, with the face).
pub use auth_events::judge_batch;
pub use directory::PublicRoomsRequest;
pub use member_changes::MemberOp;
pub use relations::{relation_of, thread_of};
pub use remote::Outcome;
pub use spaces::HierarchyRequest;
pub use store_events::{EventWrite, NewRoom, OutOfBand, Placement};

use ruma::events::room::member::MembershipState;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use parking_lot::Mutex;
use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res, CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomId, RoomVersionId, UserId,
};
use serde_json::Value;

use self::pdu::Pdu;
pub use self::requests::EventSpec;
pub use self::state::{state_entries, GroupWrite, RoomState, StateDiff, StateKey};
use super::Services;
use crate::{
    store::{events::NewEvent, push::NewPushAction, relations::NewRelation},
    util, Error, Result,
};

/// Largest PDU, in bytes of canonical JSON (spec).
pub const MAX_PDU_BYTES: usize = 65_536;

type RoomSlot = Arc<tokio::sync::Mutex<Option<RoomState>>>;

/// A room locked for writing: this process's lock on its cached state and, on a cluster, the
/// room's lock across the nodes (released, after the write committed, when the guard goes).
pub struct RoomGuard {
    state: tokio::sync::OwnedMutexGuard<Option<RoomState>>,
    cluster: Option<(OwnedRoomId, crate::store::cluster::RoomLock)>,
}

impl std::ops::Deref for RoomGuard {
    type Target = Option<RoomState>;
    fn deref(&self) -> &Self::Target {
        &self.state
    }
}

impl std::ops::DerefMut for RoomGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.state
    }
}

impl Drop for RoomGuard {
    fn drop(&mut self) {
        if let Some((room, lock)) = self.cluster.take() {
            tokio::spawn(async move {
                crate::store::cluster::RoomLocks::unlock(room.as_str(), lock).await
            });
        }
    }
}

#[derive(Default)]
pub struct RoomCache {
    rooms: Mutex<HashMap<OwnedRoomId, RoomSlot>>,
    /// Events waiting for their room's writer (see writer.rs).
    pending: Mutex<HashMap<OwnedRoomId, Vec<writer::Job>>>,
    versions: Mutex<HashMap<OwnedRoomId, RoomVersionId>>,
    /// Rooms being upgraded (one upgrade at a time per room).
    upgrading: Mutex<HashSet<OwnedRoomId>>,
    /// Backfill over federation (stream positions below the start, one backfill per room).
    pub backfill: backfill::Backfill,
}

/// A built, signed and authorised event waiting to be persisted.
pub struct NewPdu {
    pub pdu: Arc<Pdu>,
    pub json: String,
    pub state_group: i64,
    pub group_write: Option<GroupWrite>,
    pub device: Option<String>,
    pub txn: Option<String>,
    /// Scope key of the transaction id (set by the writer).
    pub txn_key: Option<String>,
    /// Set for events from other servers that fail against the current state.
    pub soft_failed: bool,
}

impl RoomState {
    pub fn new_room(version: RoomVersionId, rules: RoomVersionRules, room_id: OwnedRoomId) -> Self {
        Self {
            room_id,
            version,
            rules,
            state: HashMap::new(),
            extremities: vec![],
            depth: 0,
            state_group: None,
            chain_len: 0,
            local_members: HashSet::new(),
            recent_txns: HashMap::new(),
            min_ts: 0,
            resolved: vec![],
            extra_groups: vec![],
        }
    }

    pub fn get(&self, kind: StateEventType, key: &str) -> Option<&Arc<Pdu>> {
        self.state.get(&(kind, key.to_owned()))
    }

    /// Whether users of other servers may take part (`m.federate` of the create event).
    pub fn federates(&self) -> bool {
        self.get(StateEventType::RoomCreate, "")
            .and_then(|p| serde_json::from_str::<Value>(p.content.get()).ok())
            .and_then(|c| c.get("m.federate").and_then(Value::as_bool))
            .unwrap_or(true)
    }

    pub fn membership(&self, user: &UserId) -> Option<MembershipState> {
        self.get(StateEventType::RoomMember, user.as_str())
            .and_then(|p| p.membership())
    }

    /// The power level of a user and the level needed for an event type, from current state.
    pub fn power_levels(&self) -> Value {
        self.get(StateEventType::RoomPowerLevels, "")
            .and_then(|p| serde_json::from_str(p.content.get()).ok())
            .unwrap_or(Value::Null)
    }

    pub fn creators(&self) -> HashSet<OwnedUserId> {
        creators_in(&self.rules, &self.state)
    }

    pub fn user_power(&self, user: &UserId) -> i64 {
        user_power_in(&self.rules, &self.state, user)
    }

    /// Level needed to send a state event of this type (0 in a room without power levels).
    pub fn state_power(&self, kind: &str) -> i64 {
        let pl = self.power_levels();
        if pl.is_null() {
            return 0;
        }
        pl["events"][kind]
            .as_i64()
            .or_else(|| pl["state_default"].as_i64())
            .unwrap_or(50)
    }

    /// Level needed for an action field such as `invite`, `kick`, `ban`, `redact`.
    pub fn action_power(&self, action: &str) -> i64 {
        action_power_in(&self.state, action)
    }

    /// Builds, signs and authorises an event on top of the current state, then applies it.
    pub fn build(
        &mut self,
        srv: &Services,
        sender: &UserId,
        mut spec: EventSpec,
        device: Option<&str>,
        txn: Option<&str>,
    ) -> Result<NewPdu> {
        let is_create = spec.kind == "m.room.create";
        if spec.kind.len() > 255 || spec.state_key.as_ref().is_some_and(|k| k.len() > 255) {
            return Err(Error::bad_json(
                "Event type and state key must be at most 255 bytes",
            ));
        }
        let content = content_object(std::mem::take(&mut spec.content))?;
        let auth_events = self.auth_event_ids(&spec, sender, &content, is_create)?;
        let depth = self.depth + 1;
        let mut obj = self.unsigned_event(&spec, sender, content, &auth_events, depth, is_create);
        let size = serde_json::to_vec(&obj)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PDU_BYTES - 512 {
            return Err(Error::too_large("Event too large"));
        }
        let hash = srv
            .rooms()
            .sign_pdu(&mut obj, &self.rules)
            .map_err(|e| Error::too_large(e.message))?;
        // Room versions ≥ 3 carry no event_id field: the id is the reference hash.
        let event_id = format!("${hash}");
        if is_create && self.rules.authorization.room_create_event_id_as_room_id {
            self.room_id =
                RoomId::parse(format!("!{hash}")).map_err(|e| Error::unknown(e.to_string()))?;
        }
        if let Some(unsigned) = self.replaced_state(&spec) {
            obj.insert("unsigned".into(), CanonicalJsonValue::Object(unsigned));
        }
        let json = serde_json::to_string(&obj).map_err(|e| Error::unknown(e.to_string()))?;
        let pdu = Pdu::parse(&event_id, &json).map_err(Error::bad_json)?;
        self.authorise(srv, &pdu, &auth_events, spec.bypass_policy)?;

        // Apply.
        let group_write = if spec.state_key.is_some() {
            Some(self.push_state(srv, &pdu))
        } else {
            None
        };
        self.extremities = vec![pdu.event_id.clone()];
        self.depth = depth;
        Ok(NewPdu {
            pdu,
            json,
            state_group: self.state_group.unwrap_or(0),
            group_write,
            device: device.map(str::to_owned),
            txn: txn.map(str::to_owned),
            txn_key: None,
            soft_failed: false,
        })
    }

    /// The auth events of a new event (sorted ids): those of the current state the auth rules
    /// name for its type, sender and content; none for the create event.
    fn auth_event_ids(
        &self,
        spec: &EventSpec,
        sender: &UserId,
        content: &CanonicalJsonObject,
        is_create: bool,
    ) -> Result<Vec<String>> {
        if is_create {
            return Ok(vec![]);
        }
        let content_raw =
            serde_json::value::to_raw_value(content).map_err(|e| Error::bad_json(e.to_string()))?;
        let auth_types = state_res::auth_types_for_event(
            &TimelineEventType::from(spec.kind.clone()),
            sender,
            spec.state_key.as_deref(),
            &content_raw,
            &self.rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let mut auth_events: Vec<String> = auth_types
            .iter()
            .filter_map(|k| self.state.get(k))
            .map(|p| p.event_id.to_string())
            .collect();
        auth_events.sort();
        auth_events.dedup();
        Ok(auth_events)
    }

    /// The event's fields before signing: on top of the room's forward extremities (ten at
    /// most), timestamped no earlier than the room's latest event.
    fn unsigned_event(
        &self,
        spec: &EventSpec,
        sender: &UserId,
        content: CanonicalJsonObject,
        auth_events: &[String],
        depth: u64,
        is_create: bool,
    ) -> CanonicalJsonObject {
        let now = util::now_ms().max(self.min_ts);
        let string = |s: String| CanonicalJsonValue::String(s);
        let str_array =
            |v: Vec<String>| CanonicalJsonValue::Array(v.into_iter().map(string).collect());
        let mut obj = CanonicalJsonObject::new();
        obj.insert("auth_events".into(), str_array(auth_events.to_vec()));
        obj.insert("content".into(), CanonicalJsonValue::Object(content));
        obj.insert("depth".into(), int(depth as i64));
        obj.insert("origin_server_ts".into(), int(now));
        let prevs = self.extremities.iter().take(10).map(|e| e.to_string());
        obj.insert("prev_events".into(), str_array(prevs.collect()));
        if !(is_create && self.rules.authorization.room_create_event_id_as_room_id) {
            obj.insert("room_id".into(), string(self.room_id.to_string()));
        }
        obj.insert("sender".into(), string(sender.to_string()));
        obj.insert("type".into(), string(spec.kind.clone()));
        if let Some(k) = &spec.state_key {
            obj.insert("state_key".into(), string(k.clone()));
        }
        if let Some(r) = &spec.redacts {
            obj.insert("redacts".into(), string(r.to_string()));
        }
        obj
    }

    /// Unsigned data kept with a local state event for clients: the state it replaces
    /// (`replaces_state`, `prev_content`, `prev_sender`).
    fn replaced_state(&self, spec: &EventSpec) -> Option<CanonicalJsonObject> {
        let key = spec.state_key.as_ref()?;
        let prev = self
            .state
            .get(&(StateEventType::from(spec.kind.as_str()), key.clone()))?;
        let mut unsigned = CanonicalJsonObject::new();
        unsigned.insert(
            "replaces_state".into(),
            CanonicalJsonValue::String(prev.event_id.to_string()),
        );
        if let Ok(v) = serde_json::from_str::<CanonicalJsonValue>(prev.content.get()) {
            unsigned.insert("prev_content".into(), v);
        }
        unsigned.insert(
            "prev_sender".into(),
            CanonicalJsonValue::String(prev.sender.to_string()),
        );
        Some(unsigned)
    }

    /// Authorises a new event: the auth rules against its auth events, then against the state
    /// before it (our current state), then the Tchap access rules unless an admin bypasses them.
    fn authorise(
        &self,
        srv: &Services,
        pdu: &Arc<Pdu>,
        auth_events: &[String],
        bypass_policy: bool,
    ) -> Result<()> {
        let by_id: HashMap<OwnedEventId, Arc<Pdu>> = self
            .state
            .values()
            .filter(|p| {
                auth_events.contains(&p.event_id.to_string())
                    || p.kind == TimelineEventType::RoomCreate
            })
            .map(|p| (p.event_id.clone(), p.clone()))
            .collect();
        state_res::check_state_independent_auth_rules(&self.rules.authorization, &**pdu, |id| {
            by_id.get(id).cloned()
        })
        .map_err(Error::forbidden)?;
        state_res::check_state_dependent_auth_rules(&self.rules.authorization, &**pdu, |t, k| {
            self.state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .map_err(Error::forbidden)?;
        if !bypass_policy {
            crate::services::policy::access_rules::check(&srv.policy_rules, &self.state, pdu)
                .map_err(Error::forbidden)?;
        }
        Ok(())
    }
}

/// An event's content as canonical JSON: an object, or a 400 `M_BAD_JSON`.
fn content_object(content: serde_json::Value) -> Result<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(content) {
        Ok(CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(Error::bad_json("Event content must be a JSON object")),
        Err(e) => Err(Error::bad_json(format!(
            "Content is not canonical JSON: {e}"
        ))),
    }
}

impl RoomState {
    /// Makes a state event part of the current state: a new state group (a delta on the current
    /// one, or a full snapshot every few dozen), and the local members it changes.
    pub fn push_state(&mut self, srv: &Services, pdu: &Arc<Pdu>) -> GroupWrite {
        let key = pdu.state_key.clone().unwrap_or_default();
        let skey = (
            StateEventType::from(pdu.kind.to_string().as_str()),
            key.clone(),
        );
        self.state.insert(skey.clone(), pdu.clone());
        let id = srv.state_group_ids.next();
        let write = GroupWrite::after(
            id,
            self.state_group.map(|g| (g, self.chain_len)),
            Some((&skey, pdu)),
            &self.state,
        );
        self.state_group = Some(id);
        self.chain_len = write.chain_len;
        if pdu.kind == TimelineEventType::RoomMember {
            if let Ok(target) = UserId::parse(key.as_str()) {
                if srv.is_local(&target) {
                    if pdu.joined_or_invited() {
                        self.local_members.insert(target);
                    } else {
                        self.local_members.remove(&target);
                    }
                }
            }
        }
        write
    }

    /// The current state as (type, state_key, event_id) rows.
    pub fn snapshot(&self) -> Vec<(String, String, String)> {
        state_entries(&self.state)
    }
}

fn state_content(state: &HashMap<StateKey, Arc<Pdu>>, kind: &str) -> Value {
    state
        .get(&(StateEventType::from(kind), String::new()))
        .and_then(|p| serde_json::from_str(p.content.get()).ok())
        .unwrap_or(Value::Null)
}

/// The creators of a room in `state`: privileged above any power level from room v12.
pub fn creators_in(
    rules: &RoomVersionRules,
    state: &HashMap<StateKey, Arc<Pdu>>,
) -> HashSet<OwnedUserId> {
    let mut out = HashSet::new();
    let Some(create) = state.get(&(StateEventType::RoomCreate, String::new())) else {
        return out;
    };
    if rules.authorization.explicitly_privilege_room_creators {
        out.insert(create.sender.clone());
        let v = state_content(state, "m.room.create");
        for u in v["additional_creators"].as_array().into_iter().flatten() {
            if let Some(u) = u.as_str().and_then(|s| UserId::parse(s).ok()) {
                out.insert(u);
            }
        }
    }
    out
}

/// A user's power level in `state` (creators: above everything).
pub fn user_power_in(
    rules: &RoomVersionRules,
    state: &HashMap<StateKey, Arc<Pdu>>,
    user: &UserId,
) -> i64 {
    if creators_in(rules, state).contains(user) {
        return i64::MAX;
    }
    let pl = state_content(state, "m.room.power_levels");
    if pl.is_null() {
        // Without power levels the creator has 100 (pre-v12 rooms).
        return match state.get(&(StateEventType::RoomCreate, String::new())) {
            Some(c) if c.sender == user => 100,
            _ => 0,
        };
    }
    pl["users"][user.as_str()]
        .as_i64()
        .or_else(|| pl["users_default"].as_i64())
        .unwrap_or(0)
}

/// Level needed in `state` for an action field such as `invite`, `kick`, `ban`, `redact`.
pub fn action_power_in(state: &HashMap<StateKey, Arc<Pdu>>, action: &str) -> i64 {
    let default = match action {
        "invite" => 0,
        _ => 50,
    };
    state_content(state, "m.room.power_levels")[action]
        .as_i64()
        .unwrap_or(default)
}

pub(crate) fn int(v: i64) -> CanonicalJsonValue {
    CanonicalJsonValue::Integer(ruma::Int::new_saturating(v))
}

impl RoomCache {
    /// The rooms with a slot now (loaded, being loaded or being created).
    pub fn entries(&self) -> usize {
        self.rooms.lock().len()
    }
}

impl RoomsFace<'_> {
    /// Locks a room for writing, loading its state on first use. The slot is None when the room
    /// is unknown here.
    pub async fn lock_room(self, room_id: &RoomId) -> Result<RoomGuard> {
        let slot = self
            .room_cache
            .rooms
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .clone();
        let state = slot.clone().lock_owned().await;
        let cluster = self
            .cluster
            .lock_room(room_id.as_str())
            .await?
            .map(|l| (room_id.to_owned(), l));
        let mut guard = RoomGuard { state, cluster };
        if guard.is_some() && guard.cluster.is_some() && !self.cache_is_current(&guard).await? {
            // Another node wrote the room since it was cached here.
            *guard = None;
        }
        self.metrics
            .cache_lookup(crate::metrics::CACHE_ROOMS, guard.is_some());
        if guard.is_none() {
            *guard = self.load_room(room_id).await?;
            if guard.is_none() {
                // Unknown room: keep no slot for it, so made-up room ids cannot fill the cache.
                let mut rooms = self.room_cache.rooms.lock();
                if rooms.get(room_id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    rooms.remove(room_id);
                }
            }
        }
        Ok(guard)
    }

    /// On a cluster, under the room's lock: does the cached state still end where the
    /// database's room does (its forward extremities)?
    async fn cache_is_current(self, guard: &RoomGuard) -> Result<bool> {
        let Some(room) = guard.as_ref() else {
            return Ok(false);
        };
        let (mut stored, _) = self.db.room_extremities(room.room_id.as_str()).await?;
        let mut cached: Vec<&str> = room.extremities.iter().map(|e| e.as_str()).collect();
        stored.sort_unstable();
        cached.sort_unstable();
        Ok(stored.iter().map(String::as_str).eq(cached.iter().copied()))
    }

    /// Forgets what is cached of a room that was just purged from the database (the caller
    /// holds its lock): the next use reads it again, and finds it unknown.
    pub fn forget_room_state(self, room_id: &RoomId, guard: &mut RoomGuard) {
        **guard = None;
        self.room_cache.versions.lock().remove(room_id);
    }

    /// Claims a new room id in the cache; false when a room (or a creation) already has it.
    fn reserve_room_id(self, room_id: &RoomId) -> bool {
        let mut rooms = self.room_cache.rooms.lock();
        if rooms.contains_key(room_id) {
            return false;
        }
        rooms.insert(room_id.to_owned(), RoomSlot::default());
        true
    }

    /// A slot for a room being created (the id is known only after the create event in v12).
    pub async fn lock_new_room(self, room_id: &RoomId) -> RoomGuard {
        let slot = self
            .room_cache
            .rooms
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .clone();
        RoomGuard {
            state: slot.lock_owned().await,
            cluster: None,
        }
    }

    async fn load_room(self, room_id: &RoomId) -> Result<Option<RoomState>> {
        let Some(version) = self.db.room_version(room_id.as_str()).await? else {
            return Ok(None);
        };
        let (version, rules) =
            version::parse(&version).ok_or_else(|| Error::unknown("Unsupported room version"))?;
        let mut room = RoomState::new_room(version, rules, room_id.to_owned());
        for row in self
            .db
            .current_state_events(&[room_id.to_string()], None)
            .await?
        {
            let pdu = Pdu::parse(&row.event_id, &row.json).map_err(Error::unknown)?;
            if let (Some(k), true) = (&row.state_key, row.kind == "m.room.member") {
                if let Ok(u) = UserId::parse(k.as_str()) {
                    if self.is_local(&u) && pdu.joined_or_invited() {
                        room.local_members.insert(u);
                    }
                }
            }
            room.state.insert(
                (
                    StateEventType::from(row.kind.as_str()),
                    row.state_key.unwrap_or_default(),
                ),
                pdu,
            );
        }
        let (extremities, depth) = self.db.room_extremities(room_id.as_str()).await?;
        room.extremities = extremities
            .iter()
            .filter_map(|e| ruma::EventId::parse(e).ok())
            .collect();
        room.depth = depth.max(0) as u64;
        if let Some(latest) = self
            .db
            .latest_event_before(room_id.as_str(), i64::MAX)
            .await?
        {
            room.state_group = latest.state_group;
            if let Some(g) = latest.state_group {
                room.chain_len = self.db.state_group_chain_len(g).await?;
            }
        }
        Ok(Some(room))
    }

    /// The version rules of a known room (cached; versions never change).
    pub async fn room_rules(self, room_id: &str) -> Result<RoomVersionRules> {
        let cached = ruma::RoomId::parse(room_id)
            .ok()
            .and_then(|r| self.room_cache.versions.lock().get(&r).cloned());
        let version = match cached {
            Some(v) => v,
            None => {
                let v = self
                    .db
                    .room_version(room_id)
                    .await?
                    .ok_or_else(|| Error::not_found("Unknown room"))?;
                let (v, _) =
                    version::parse(&v).ok_or_else(|| Error::unknown("Unsupported room version"))?;
                if let Ok(r) = RoomId::parse(room_id) {
                    self.room_cache.versions.lock().insert(r, v.clone());
                }
                v
            }
        };
        version::supported(&version).ok_or_else(|| Error::unknown("Unsupported room version"))
    }

    /// Persists built events in one transaction and wakes the users concerned. On failure the
    /// room's cached state is dropped (it is reloaded from the database on next use).
    pub async fn persist(
        self,
        guard: &mut RoomGuard,
        batch: Vec<NewPdu>,
        new_room: Option<(&UserId, bool)>,
    ) -> Result<Vec<i64>> {
        let ids = self
            .take_positions(|s| &s.events_stream, batch.len())
            .await?;
        let mut wake: Vec<OwnedUserId> = vec![];
        if let Some(room) = guard.as_ref() {
            wake.extend(room.local_members.iter().cloned());
            wake.extend(
                batch
                    .iter()
                    .filter(|n| n.pdu.kind == TimelineEventType::RoomMember)
                    .filter_map(|n| {
                        n.pdu
                            .state_key
                            .as_deref()
                            .and_then(|k| UserId::parse(k).ok())
                    }),
            );
        }
        // The positions are completed (or abandoned) by persist_inner's write, whatever fails.
        let res = self
            .persist_inner(guard, &batch, &ids, new_room, wake)
            .await;
        match res {
            Ok(notified) => {
                if let Some(room) = guard.as_mut() {
                    room.resolved.clear();
                    room.extra_groups.clear();
                }
                let (notified, destinations) = notified;
                // Debug builds only: die between the commit and the federation send, as a crash
                // would (the crash scenario of federation-tests checks the event still goes out).
                #[cfg(debug_assertions)]
                if !destinations.is_empty()
                    && std::env::var_os("PALABRE_FAILPOINT")
                        .is_some_and(|f| f == "after_local_event_commit")
                {
                    std::process::abort();
                }
                self.push().wake_pushers(notified);
                // Local events were queued for the other servers with them: send.
                for d in destinations {
                    self.wake_destination(d.as_str(), false);
                }
                Ok(ids)
            }
            Err(e) => {
                **guard = None;
                Err(e)
            }
        }
    }

    async fn persist_inner(
        self,
        guard: &RoomGuard,
        batch: &[NewPdu],
        ids: &[i64],
        new_room: Option<(&UserId, bool)>,
        wake: Vec<OwnedUserId>,
    ) -> Result<(Vec<String>, Vec<OwnedServerName>)> {
        // A failure before the write abandons the positions as a failed write does.
        let fail = |e: Error| {
            self.abandon_positions(|s| &s.events_stream, ids.to_vec());
            e
        };
        let room = guard
            .as_ref()
            .ok_or_else(|| fail(Error::unknown("room state missing")))?;
        let room_id = room.room_id.as_str();
        let strings: Vec<pdu::PduStrings> = batch.iter().map(|n| n.pdu.strings()).collect();
        let events = live_rows(room_id, batch, ids, &strings);
        let (removed, added) = extremity_changes(&events);
        let changes = state_changes(room, batch, &events);
        let state = StateRows::of(&changes);

        // Relations and push rule results, written with the events.
        let contents: Vec<Value> = batch
            .iter()
            .map(|n| serde_json::from_str(n.pdu.content.get()).unwrap_or(Value::Null))
            .collect();
        let relations = self
            .relations_in_room(room_id, live_relations(&events, &contents))
            .await
            .map_err(fail)?;
        let push = self
            .push()
            .evaluate_push(room, batch, ids, &contents)
            .await
            .map_err(fail)?;
        let redactions = live_redactions(room, batch);
        let (destinations, outbox) = self.live_outbox(room, batch);
        let write = EventWrite {
            placement: Placement::Live,
            new_room: new_room.map(|(creator, public)| NewRoom {
                version: room.version.as_str(),
                creator: creator.as_str(),
                public,
            }),
            extremities_removed: removed,
            extremities_added: added,
            search: true,
            relations,
            push: push_rows(&push),
            read_upto: self.own_reads(&events),
            state_groups: batch
                .iter()
                .filter_map(|n| n.group_write.as_ref())
                .chain(&room.extra_groups)
                .collect(),
            redactions,
            state_removed: state.gone,
            state_set: state.set,
            memberships: state.members,
            outbox,
            events,
            ..Default::default()
        };
        self.write_events(room_id, ids.to_vec(), write, wake)
            .await?;
        let mut notified: Vec<String> = push.into_iter().map(|p| p.user_id).collect();
        notified.sort_unstable();
        notified.dedup();
        Ok((notified, destinations))
    }

    /// Persist step: the federation outbox. Local events go to the other servers of the room:
    /// queued in the same transaction, so that no committed event misses the outbox (the sender
    /// resumes from it after a crash). Returns the destinations and the rows.
    fn live_outbox(
        self,
        room: &RoomState,
        batch: &[NewPdu],
    ) -> (Vec<OwnedServerName>, Vec<(i64, String, String)>) {
        let local: Vec<String> = batch
            .iter()
            .filter(|n| !n.soft_failed && self.is_local(&n.pdu.sender))
            .map(|n| n.pdu.event_id.to_string())
            .collect();
        let destinations = if local.is_empty() {
            vec![]
        } else {
            self.room_destinations(room)
        };
        let outbox = self.outbox_rows(&destinations, &local);
        (destinations, outbox)
    }

    /// Persist step: read markers. A user's own event is read: what came before it no longer
    /// counts as unread.
    fn own_reads<'a>(self, events: &[NewEvent<'a>]) -> Vec<(&'a str, i64)> {
        let mut own: HashMap<&str, i64> = HashMap::new();
        for ev in events {
            let local = UserId::parse(ev.sender).is_ok_and(|u| self.is_local(&u));
            if local {
                own.insert(ev.sender, ev.stream_ordering);
            }
        }
        own.into_iter().collect()
    }
}

/// Persist step: the event rows, at the positions taken for them.
fn live_rows<'a>(
    room_id: &'a str,
    batch: &'a [NewPdu],
    ids: &[i64],
    strings: &'a [pdu::PduStrings],
) -> Vec<NewEvent<'a>> {
    batch
        .iter()
        .zip(ids)
        .zip(strings)
        .map(|((n, stream), s)| NewEvent {
            sender_device: n.device.as_deref(),
            txn_id: n.txn.as_deref(),
            txn_key: n.txn_key.as_deref(),
            soft_failed: n.soft_failed,
            ..n.pdu
                .new_event(s, room_id, &n.json, *stream, n.state_group, false)
        })
        .collect()
}

/// Persist step: the forward extremities (removed, added). Every prev_event stops being one;
/// the batch's events not referenced by a later event of the batch become ones. Soft-failed
/// events are never extremities.
fn extremity_changes<'a>(events: &[NewEvent<'a>]) -> (Vec<&'a str>, Vec<&'a str>) {
    let referenced: HashSet<&str> = events
        .iter()
        .filter(|e| !e.soft_failed)
        .flat_map(|e| e.prev_events.iter().copied())
        .collect();
    let removed: Vec<&str> = referenced.iter().copied().collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| !e.soft_failed)
        .map(|e| e.event_id)
        .filter(|id| !referenced.contains(id))
        .collect();
    (removed, added)
}

/// A current-state row set by a write: the event, its membership (empty for other types than
/// `m.room.member`) and its position.
struct StateRow {
    event_id: String,
    membership: String,
    stream: i64,
}

/// Persist step: the current state and memberships, per (type, state key). The last event per
/// key wins; an event that went through state resolution sets what the resolution decided
/// instead (None: removed).
fn state_changes(
    room: &RoomState,
    batch: &[NewPdu],
    events: &[NewEvent],
) -> HashMap<(String, String), Option<StateRow>> {
    let resolved: HashMap<&str, &StateDiff> = room
        .resolved
        .iter()
        .map(|(id, diff)| (id.as_str(), diff))
        .collect();
    let row = |t: &str, p: &Arc<Pdu>, stream: i64| StateRow {
        event_id: p.event_id.to_string(),
        membership: if t == "m.room.member" {
            p.content_str("membership").unwrap_or_default()
        } else {
            String::new()
        },
        stream,
    };
    let mut state_rows: HashMap<(String, String), Option<StateRow>> = HashMap::new();
    for (ev, n) in events.iter().zip(batch).filter(|(e, _)| !e.soft_failed) {
        if let Some(diff) = resolved.get(ev.event_id) {
            for ((t, k), p) in diff.iter() {
                let t = t.to_string();
                let r = p.as_ref().map(|p| row(&t, p, ev.stream_ordering));
                state_rows.insert((t, k.clone()), r);
            }
        } else if let Some(key) = ev.state_key {
            let r = row(ev.kind, &n.pdu, ev.stream_ordering);
            state_rows.insert((ev.kind.to_owned(), key.to_owned()), Some(r));
        }
    }
    state_rows
}

/// The current-state rows of a write, as [`EventWrite`] takes them.
struct StateRows<'a> {
    gone: Vec<(&'a str, &'a str)>,
    set: Vec<(&'a str, &'a str, &'a str, i64)>,
    members: Vec<(&'a str, &'a str, &'a str, i64)>,
}

impl<'a> StateRows<'a> {
    fn of(changes: &'a HashMap<(String, String), Option<StateRow>>) -> Self {
        let gone = changes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|((t, k), _)| (t.as_str(), k.as_str()))
            .collect();
        let set: Vec<(&str, &str, &StateRow)> = changes
            .iter()
            .filter_map(|((t, k), v)| v.as_ref().map(|r| (t.as_str(), k.as_str(), r)))
            .collect();
        let members = set
            .iter()
            .filter(|(t, _, _)| *t == "m.room.member")
            .map(|(_, k, r)| (*k, r.membership.as_str(), r.event_id.as_str(), r.stream))
            .collect();
        let set = set
            .iter()
            .map(|(t, k, r)| (*t, *k, r.event_id.as_str(), r.stream))
            .collect();
        StateRows { gone, set, members }
    }
}

/// Persist step: relations, written with the events (soft-failed events relate to nothing).
fn live_relations<'a>(events: &[NewEvent<'a>], contents: &'a [Value]) -> Vec<NewRelation<'a>> {
    events
        .iter()
        .zip(contents)
        .filter(|(ev, _)| !ev.soft_failed)
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
        .collect()
}

/// Persist step: the push rule results as rows.
fn push_rows(push: &[crate::services::push::evaluate::PushAction]) -> Vec<NewPushAction<'_>> {
    push.iter()
        .map(|p| NewPushAction {
            user_id: &p.user_id,
            event_id: &p.event_id,
            stream_ordering: p.stream_ordering,
            thread_id: &p.thread_id,
            notify: true,
            highlight: p.highlight,
            actions: &p.actions,
        })
        .collect()
}

/// Persist step: redactions, judged with the room's power levels (see redactions.rs);
/// soft-failed events neither redact nor count as stored targets.
fn live_redactions<'a>(room: &RoomState, batch: &'a [NewPdu]) -> Vec<redactions::RedactionIn<'a>> {
    batch
        .iter()
        .filter(|n| !n.soft_failed && n.pdu.kind == TimelineEventType::RoomRedaction)
        .filter_map(|n| {
            Some(redactions::RedactionIn {
                event_id: n.pdu.event_id.as_str(),
                sender: n.pdu.sender.as_str(),
                target: n.pdu.redacts.as_ref()?.as_str(),
                may_redact_any: room.user_power(&n.pdu.sender) >= room.action_power("redact"),
            })
        })
        .collect()
}
