//! Typing notifications: in memory (ephemeral by nature), with their own stream position that
//! starts at the clock so it never goes back across restarts.

use crate::services::sync::SyncFace;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{json, Value};

use crate::{util, Error, Result};

/// Longest typing timeout honoured.
const MAX_TIMEOUT_MS: u64 = 120_000;
/// Timeout when the client gives none.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

#[derive(Default)]
struct RoomTyping {
    /// user -> expiry (ms since the epoch)
    users: HashMap<OwnedUserId, i64>,
    /// Stream position of the last change.
    changed: i64,
}

pub struct Typing {
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    stream: AtomicI64,
}

impl Default for Typing {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            stream: AtomicI64::new(util::now_ms()),
        }
    }
}

impl Typing {
    pub fn current(&self) -> i64 {
        self.stream.load(Ordering::Acquire)
    }

    /// Applies a change; the new position if anything changed.
    fn apply(&self, room: &RoomId, user: &UserId, until: Option<i64>) -> Option<i64> {
        let mut rooms = self.rooms.lock();
        let entry = rooms.entry(room.to_owned()).or_default();
        let changed = match until {
            Some(t) => entry.users.insert(user.to_owned(), t).is_none(),
            None => entry.users.remove(user).is_some(),
        };
        if !changed {
            return None;
        }
        let pos = util::clock_position(&self.stream);
        // The room stays in the map even when nobody types: `changed` is what syncs compare.
        entry.changed = pos;
        Some(pos)
    }

    /// Drops a user whose typing expired at exactly `expiry` (a later refresh keeps them).
    fn expire(&self, room: &RoomId, user: &UserId, expiry: i64) -> Option<i64> {
        let mut rooms = self.rooms.lock();
        let entry = rooms.get_mut(room)?;
        if entry.users.get(user) != Some(&expiry) {
            return None;
        }
        entry.users.remove(user);
        let pos = util::clock_position(&self.stream);
        entry.changed = pos;
        Some(pos)
    }
}

impl SyncFace<'_> {
    /// `PUT /rooms/{id}/typing/{user}`.
    pub async fn set_typing(
        self,
        user: &UserId,
        room: &RoomId,
        typing: bool,
        timeout_ms: Option<u64>,
    ) -> Result<()> {
        let joined = self
            .db
            .membership(user.as_str(), room.as_str())
            .await?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            return Err(Error::forbidden("You are not in this room"));
        }
        let timeout = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).min(MAX_TIMEOUT_MS);
        let expiry = util::now_ms() + timeout as i64;
        let changed = self
            .apply_typing(room, user, typing.then_some(expiry))
            .await;
        if changed && self.cluster.shared() {
            // The other nodes keep typing in memory too.
            let notice = json!({"t": "typ", "r": room, "u": user, "x": typing.then_some(expiry),
                "n": self.cluster.slot()});
            self.tell_cluster(vec![notice.to_string()]).await;
        }
        if changed && self.is_local(user) {
            self.federation()
                .send_edu_to_room(
                    room,
                    serde_json::json!({ "edu_type": "m.typing", "content": {
                    "room_id": room, "user_id": user, "typing": typing } }),
                )
                .await;
        }
        Ok(())
    }

    /// Records a typing change (`until`: the expiry, or `None` when the user stopped), wakes
    /// the room's local members and schedules the expiry; false when nothing changed.
    async fn apply_typing(self, room: &RoomId, user: &UserId, until: Option<i64>) -> bool {
        if self.typing.apply(room, user, until).is_none() {
            return false;
        }
        self.wake_room(room).await;
        if let (Some(expiry), Some(me)) = (until, self.me.upgrade()) {
            let (room, user) = (room.to_owned(), user.to_owned());
            let wait = (expiry - util::now_ms()).clamp(0, MAX_TIMEOUT_MS as i64) as u64;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if me.typing.expire(&room, &user, expiry).is_some() {
                    me.sync().wake_room(&room).await;
                }
            });
        }
        true
    }

    /// Another node's typing change (see `set_typing`).
    pub async fn typing_from_node(self, n: &Value) {
        let (Some(room), Some(user)) = (
            n["r"].as_str().and_then(|r| RoomId::parse(r).ok()),
            n["u"].as_str().and_then(|u| UserId::parse(u).ok()),
        ) else {
            return;
        };
        self.apply_typing(&room, &user, n["x"].as_i64()).await;
    }

    async fn wake_room(self, room: &RoomId) {
        match self.local_members(room).await {
            Ok(users) => self.notifier.notify(users.iter().map(|u| -> &UserId { u })),
            Err(e) => tracing::warn!(error = %e, "typing wake-up failed"),
        }
    }

    /// The local users joined to or invited into a room (who an ephemeral change wakes).
    pub(super) async fn local_members(self, room: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .db
            .members_of(&[room.to_string()])
            .await?
            .into_iter()
            .filter_map(|(_, m)| UserId::parse(m).ok())
            .filter(|u| self.is_local(u))
            .collect())
    }

    /// `m.typing` events for the joined rooms whose typing set changed in (since, until] (all
    /// rooms with someone typing on an initial sync).
    pub(super) fn typing_for_sync(
        self,
        joined: &HashSet<&str>,
        since: Option<i64>,
        until: i64,
    ) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if since.is_some_and(|s| s >= until) {
            return out;
        }
        let rooms = self.typing.rooms.lock();
        // Walk the smaller side: the user's rooms or the rooms anyone typed in.
        let pairs: Vec<(&OwnedRoomId, &RoomTyping)> = if joined.len() < rooms.len() {
            joined
                .iter()
                .filter_map(|r| RoomId::parse(*r).ok())
                .filter_map(|r| rooms.get_key_value(&r))
                .collect()
        } else {
            rooms
                .iter()
                .filter(|(r, _)| joined.contains(r.as_str()))
                .collect()
        };
        for (room, t) in pairs {
            let relevant = match since {
                Some(s) => t.changed > s && t.changed <= until,
                None => !t.users.is_empty(),
            };
            if relevant {
                let mut users: Vec<&str> = t.users.keys().map(|u| u.as_str()).collect();
                users.sort_unstable();
                out.insert(
                    room.to_string(),
                    json!({ "type": "m.typing", "content": { "user_ids": users } }),
                );
            }
        }
        out
    }
}
