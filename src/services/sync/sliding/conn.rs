//! A sliding-sync connection's remembered state: the sticky parameters (lists, room
//! subscriptions, extensions) and what each room was last sent with. Stored in the database
//! (a `pos` survives a restart and works on every node) and cached here, each version under
//! its own number so a cached version is never stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::request::{ExtensionsReq, ListReq, RoomConfig, SlidingBody, MAX_SUBSCRIPTIONS};
use crate::services::streams::SyncToken;
use crate::{Error, Result};

/// Connections kept in memory; past that the least recently used are dropped (they are
/// reloaded from the database when used again).
const CACHED_CONNECTIONS: usize = 2048;

/// What a room was last sent with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomSent {
    /// The event position it was sent up to, when behind the connection's position (it got
    /// events while outside every range); absent when up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<i64>,
    /// The `required_state` it was sent with (a digest).
    pub rs: u64,
    /// The timeline limit it was sent with.
    pub tl: u64,
    /// The user's membership it was sent with (a change sends the room anew).
    #[serde(default)]
    pub m: String,
}

/// The remembered state of a connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnState {
    #[serde(default)]
    pub lists: BTreeMap<String, ListReq>,
    #[serde(default)]
    pub subs: BTreeMap<String, RoomConfig>,
    #[serde(default)]
    pub ext: ExtensionsReq,
    #[serde(default)]
    pub rooms: HashMap<String, RoomSent>,
    /// Each list's count as last sent.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

impl ConnState {
    /// The parameters of this request over those remembered: a field a request leaves out
    /// keeps its last value (sticky), for lists, subscriptions and extensions.
    pub fn merge_request(&mut self, b: &SlidingBody, ext: ExtensionsReq) {
        for (name, l) in &b.lists {
            let old = self.lists.entry(name.clone()).or_default();
            if l.ranges.is_some() {
                old.ranges = l.ranges.clone();
            }
            if l.room.required_state.is_some() {
                old.room.required_state = l.room.required_state.clone();
            }
            if l.room.timeline_limit.is_some() {
                old.room.timeline_limit = l.room.timeline_limit;
            }
            if l.filters.is_some() {
                old.filters = l.filters.clone();
            }
        }
        for (room, c) in &b.room_subscriptions {
            self.subs.insert(room.clone(), c.clone());
        }
        for room in &b.unsubscribe_rooms {
            self.subs.remove(room);
        }
        if self.subs.len() > MAX_SUBSCRIPTIONS {
            let extra: Vec<String> = self.subs.keys().skip(MAX_SUBSCRIPTIONS).cloned().collect();
            for k in extra {
                self.subs.remove(&k);
            }
        }
        self.ext.to_device.merge(ext.to_device);
        self.ext.e2ee.merge(ext.e2ee);
        self.ext.account_data.merge(ext.account_data);
        self.ext.receipts.merge(ext.receipts);
        self.ext.typing.merge(ext.typing);
    }
}

/// A client's position: the version of the connection state and the streams' positions.
#[derive(Clone, Copy, Debug)]
pub struct Pos {
    pub gen: i64,
    pub token: SyncToken,
}

impl Pos {
    pub fn parse(s: &str) -> Result<Self> {
        let (gen, token) = s.split_once('-').ok_or_else(unknown_pos)?;
        let gen = gen.parse().map_err(|_| unknown_pos())?;
        let token = SyncToken::parse(token).map_err(|_| unknown_pos())?;
        Ok(Self { gen, token })
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.gen, self.token)
    }
}

/// `M_UNKNOWN_POS`: the client must start the connection again.
pub fn unknown_pos() -> Error {
    Error::new(
        axum::http::StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
        "Unknown position: start the sliding sync connection again",
    )
}

type Key = (String, String, String);

/// The connections in memory: key -> (last use, version, state).
#[derive(Default)]
pub struct Connections {
    map: Mutex<HashMap<Key, Cached>>,
    tick: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Cached {
    used: u64,
    gen: i64,
    state: Arc<ConnState>,
    /// Each room's bump stamp as known, and up to which event position.
    bumps: Arc<Bumps>,
}

/// Bump stamps of the user's rooms (0: none yet), valid up to `at`.
#[derive(Clone, Default)]
pub struct Bumps {
    pub at: i64,
    pub by_room: HashMap<String, i64>,
}

impl Connections {
    pub fn get(&self, key: &Key, gen: i64) -> Option<(Arc<ConnState>, Arc<Bumps>)> {
        let mut map = self.map.lock();
        let c = map.get_mut(key)?;
        if c.gen != gen {
            return None;
        }
        c.used = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((c.state.clone(), c.bumps.clone()))
    }

    pub fn bumps(&self, key: &Key) -> Option<Arc<Bumps>> {
        self.map.lock().get(key).map(|c| c.bumps.clone())
    }

    pub fn put(&self, key: Key, gen: i64, state: Arc<ConnState>, bumps: Arc<Bumps>) {
        let mut map = self.map.lock();
        if map.len() >= CACHED_CONNECTIONS && !map.contains_key(&key) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let used = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        map.insert(
            key,
            Cached {
                used,
                gen,
                state,
                bumps,
            },
        );
    }
}
