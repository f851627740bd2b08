//! What a sliding-sync request asks, as MSC4186 defines it, with the bounds a hostile client
//! meets, and how a request's parameters merge with those remembered from the connection.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Lists per connection.
const MAX_LISTS: usize = 100;
/// Ranges per list.
const MAX_RANGES: usize = 100;
/// `required_state` pairs per list or subscription.
const MAX_REQUIRED_STATE: usize = 200;
/// Room subscriptions per connection.
pub(super) const MAX_SUBSCRIPTIONS: usize = 1000;
/// Largest timeline asked for one room.
pub const MAX_TIMELINE: u64 = 100;
/// Longest `conn_id`, `txn_id` and list name.
const MAX_NAME: usize = 256;

/// The room parameters shared by lists and room subscriptions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RoomConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_state: Option<Vec<(String, String)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_limit: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_dm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_invite: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_encrypted: Option<bool>,
    /// Room types (`null` for rooms without a type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_types: Option<Vec<Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_room_types: Option<Vec<Option<String>>>,
    /// Rooms that are children (`m.space.child`) of these spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ListReq {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<(u64, u64)>>,
    #[serde(flatten)]
    pub room: RoomConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// An extension's switch (every extension has one), and the fields some have.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ExtReq {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which lists (names, or `*`) and rooms (ids, or `*`) the extension covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

impl ExtReq {
    pub fn on(&self) -> bool {
        self.enabled == Some(true)
    }

    pub(super) fn merge(&mut self, new: ExtReq) {
        if new.enabled.is_some() {
            self.enabled = new.enabled;
        }
        if new.lists.is_some() {
            self.lists = new.lists;
        }
        if new.rooms.is_some() {
            self.rooms = new.rooms;
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ExtensionsReq {
    #[serde(default)]
    pub to_device: ExtReq,
    #[serde(default)]
    pub e2ee: ExtReq,
    #[serde(default)]
    pub account_data: ExtReq,
    #[serde(default)]
    pub receipts: ExtReq,
    #[serde(default)]
    pub typing: ExtReq,
}

/// The request body.
#[derive(Debug, Default, Deserialize)]
pub struct SlidingBody {
    #[serde(default)]
    pub conn_id: Option<String>,
    #[serde(default)]
    pub txn_id: Option<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, ListReq>,
    #[serde(default)]
    pub room_subscriptions: BTreeMap<String, RoomConfig>,
    #[serde(default)]
    pub unsubscribe_rooms: Vec<String>,
    #[serde(default)]
    pub extensions: Value,
}

/// The parsed extensions, plus the to-device `since` (not sticky).
pub struct ExtensionsIn {
    pub req: ExtensionsReq,
    pub to_device_since: Option<String>,
}

impl SlidingBody {
    pub fn parse(body: Value) -> Result<Self> {
        let b: SlidingBody = serde_json::from_value(body)
            .map_err(|e| Error::bad_json(format!("Invalid sliding sync request: {e}")))?;
        let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_NAME);
        if long(&b.conn_id) || long(&b.txn_id) || b.lists.keys().any(|k| k.len() > MAX_NAME) {
            return Err(Error::invalid_param(
                "conn_id, txn_id or a list name is too long",
            ));
        }
        if b.lists.len() > MAX_LISTS
            || b.room_subscriptions.len() > MAX_SUBSCRIPTIONS
            || b.unsubscribe_rooms.len() > MAX_SUBSCRIPTIONS
        {
            return Err(Error::invalid_param("Too many lists or room subscriptions"));
        }
        for l in b.lists.values() {
            if l.ranges.as_ref().is_some_and(|r| r.len() > MAX_RANGES)
                || l.ranges
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|(a, z)| a > z))
            {
                return Err(Error::invalid_param("Bad list ranges"));
            }
            check_config(&l.room)?;
        }
        for c in b.room_subscriptions.values() {
            check_config(c)?;
        }
        Ok(b)
    }

    pub fn extensions(&self) -> Result<ExtensionsIn> {
        let v = if self.extensions.is_null() {
            Value::Object(Default::default())
        } else {
            self.extensions.clone()
        };
        let to_device_since = v["to_device"]["since"].as_str().map(str::to_owned);
        let req = serde_json::from_value(v)
            .map_err(|e| Error::bad_json(format!("Invalid extensions: {e}")))?;
        Ok(ExtensionsIn {
            req,
            to_device_since,
        })
    }
}

fn check_config(c: &RoomConfig) -> Result<()> {
    if c.required_state
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REQUIRED_STATE)
    {
        return Err(Error::invalid_param("required_state is too long"));
    }
    Ok(())
}

/// What a room is sent with when several lists and subscriptions name it: the longest
/// timeline and the union of the state asked.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub timeline_limit: u64,
    pub required_state: BTreeSet<(String, String)>,
}

impl Wanted {
    pub fn add(&mut self, c: &RoomConfig) {
        self.timeline_limit = self
            .timeline_limit
            .max(c.timeline_limit.unwrap_or(0).min(MAX_TIMELINE));
        if let Some(rs) = &c.required_state {
            self.required_state.extend(rs.iter().cloned());
        }
    }

    /// A digest of the state asked (what the room was sent with).
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.required_state.hash(&mut h);
        h.finish()
    }

    /// Whether a state event (type, key) is asked; `$ME` is the user, `*` any type or key.
    /// `m.room.member` with `$LAZY` is answered by the caller (timeline senders).
    pub fn wants(&self, kind: &str, key: &str, me: &str) -> bool {
        self.required_state.iter().any(|(t, k)| {
            (t == "*" || t == kind) && (k == "*" || k == key || (k == "$ME" && key == me))
        })
    }

    pub fn lazy_members(&self) -> bool {
        self.required_state
            .iter()
            .any(|(t, k)| (t == "m.room.member" || t == "*") && k == "$LAZY")
    }

    /// Whether every member is asked (the whole member list loads).
    pub fn all_members(&self) -> bool {
        self.required_state
            .iter()
            .any(|(t, k)| (t == "m.room.member" || t == "*") && k == "*")
    }

    /// The member state keys asked by name (`$ME` resolved).
    pub fn named_members(&self, me: &str) -> Vec<String> {
        self.required_state
            .iter()
            .filter(|(t, _)| t == "m.room.member" || t == "*")
            .filter_map(|(_, k)| match k.as_str() {
                "$ME" => Some(me.to_owned()),
                "*" | "$LAZY" => None,
                k => Some(k.to_owned()),
            })
            .collect()
    }
}
