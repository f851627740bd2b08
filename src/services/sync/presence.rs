//! Presence (`m.presence`), switchable off in configuration (Tchap runs with it off). Kept in
//! memory: it is ephemeral by nature and a restart shows everyone offline until they sync again.

use crate::services::sync::SyncFace;
use std::{
    collections::HashMap,
    sync::atomic::{AtomicI64, Ordering},
};

use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{util, Error, Result};

/// An online user idle this long is shown `unavailable`.
const IDLE_MS: i64 = 5 * 60 * 1000;

#[derive(Clone)]
struct Entry {
    presence: String,
    status_msg: Option<String>,
    last_active_ts: i64,
    stream: i64,
}

pub struct Presence {
    users: Mutex<HashMap<OwnedUserId, Entry>>,
    stream: AtomicI64,
}

impl Default for Presence {
    /// The stream starts at the clock so positions never go back across restarts (presence is
    /// kept in memory only, and sync tokens carry its position).
    fn default() -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            stream: AtomicI64::new(util::now_ms()),
        }
    }
}

impl Presence {
    pub fn current(&self) -> i64 {
        self.stream.load(Ordering::Acquire)
    }
}

fn content(e: &Entry, now: i64) -> Value {
    let idle = now - e.last_active_ts;
    let presence = if e.presence == "online" && idle > IDLE_MS {
        "unavailable"
    } else {
        e.presence.as_str()
    };
    let mut c = json!({
        "presence": presence,
        "last_active_ago": idle.max(0),
        "currently_active": presence == "online",
    });
    if let Some(m) = &e.status_msg {
        c["status_msg"] = json!(m);
    }
    c
}

impl SyncFace<'_> {
    /// Sets a user's presence; wakes the users sharing a room with them when it changed.
    pub async fn set_presence(
        self,
        user: &UserId,
        presence: &str,
        status_msg: Option<Option<String>>,
    ) -> Result<()> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(Error::invalid_param(
                "presence must be online, offline or unavailable",
            ));
        }
        if status_msg
            .as_ref()
            .is_some_and(|m| m.as_ref().is_some_and(|m| m.len() > 1024))
        {
            return Err(Error::too_large("status_msg too long"));
        }
        if !self.config.presence {
            return Ok(()); // presence disabled: accepted and ignored, as Synapse does
        }
        let now = util::now_ms();
        if let Some(entry) = self.update_presence(user, presence, status_msg, now, true) {
            self.tell_nodes_presence(user, &entry).await;
            let sharing = self.wake_sharing(user).await?;
            if self.config.federation.enabled && self.is_local(user) {
                let dests = crate::services::federation::edus::remote_servers(
                    sharing.iter().map(|u| &**u),
                    &self.server_name,
                );
                let mut c = content(&entry, now);
                c["user_id"] = json!(user);
                let edu = json!({ "edu_type": "m.presence", "content": { "push": [c] } });
                self.federation().send_edu_to_servers(dests, edu);
            }
        }
        Ok(())
    }

    /// Records a user's presence; the entry when other users should hear of it.
    fn update_presence(
        self,
        user: &UserId,
        presence: &str,
        status_msg: Option<Option<String>>,
        last_active_ts: i64,
        only_if_changed: bool,
    ) -> Option<Entry> {
        let mut users = self.presence.users.lock();
        let old = users.get(user).cloned();
        let status = match status_msg {
            Some(m) => m,
            None => old.as_ref().and_then(|o| o.status_msg.clone()),
        };
        // A sync every few seconds only refreshes activity; other users hear of changes.
        let changed = !only_if_changed
            || old.as_ref().is_none_or(|o| {
                o.presence != presence
                    || o.status_msg != status
                    || (presence == "online" && last_active_ts - o.last_active_ts > IDLE_MS)
            });
        let stream = if changed {
            crate::util::clock_position(&self.presence.stream)
        } else {
            old.as_ref().map_or(0, |o| o.stream)
        };
        let entry = Entry {
            presence: presence.to_owned(),
            status_msg: status,
            last_active_ts,
            stream,
        };
        users.insert(user.to_owned(), entry.clone());
        changed.then_some(entry)
    }

    /// The other nodes of a cluster learn of a presence change (they keep presence in memory
    /// too).
    async fn tell_nodes_presence(self, user: &UserId, e: &Entry) {
        if self.cluster.shared() {
            let notice = json!({"t": "pres", "u": user, "p": e.presence, "m": e.status_msg,
                "a": e.last_active_ts, "n": self.cluster.slot()});
            self.tell_cluster(vec![notice.to_string()]).await;
        }
    }

    /// Another node's presence change (see `tell_nodes_presence`).
    pub async fn presence_from_node(self, n: &Value) {
        let (Some(user), Some(p), Some(a)) = (
            n["u"].as_str().and_then(|u| UserId::parse(u).ok()),
            n["p"].as_str(),
            n["a"].as_i64(),
        ) else {
            return;
        };
        let status = n["m"].as_str().map(str::to_owned);
        if self
            .update_presence(&user, p, Some(status), a, false)
            .is_some()
        {
            let _ = self.wake_sharing(&user).await;
        }
    }

    /// Wakes the users sharing a room with `user`; returns them.
    async fn wake_sharing(self, user: &UserId) -> Result<Vec<OwnedUserId>> {
        let sharing = self.db.users_sharing_rooms(user.as_str()).await?;
        let ids: Vec<OwnedUserId> = sharing
            .iter()
            .filter_map(|u| UserId::parse(u.as_str()).ok())
            .collect();
        self.notifier.notify(ids.iter().map(|u| -> &UserId { u }));
        Ok(ids)
    }

    /// An `m.presence` EDU from `origin`: its users' presence, shown to local users sharing a
    /// room with them. Ignored when presence is off here.
    pub async fn receive_presence_edu(
        self,
        origin: &ruma::ServerName,
        content: &Value,
    ) -> Result<()> {
        if !self.config.presence {
            return Ok(());
        }
        let now = util::now_ms();
        for p in content["push"].as_array().into_iter().flatten().take(1000) {
            let Some(user) = p["user_id"].as_str().and_then(|u| UserId::parse(u).ok()) else {
                continue;
            };
            let presence = p["presence"].as_str().unwrap_or_default();
            if user.server_name() != origin
                || !matches!(presence, "online" | "offline" | "unavailable")
            {
                continue;
            }
            // Kept only for users someone here shares a room with.
            if !self.federation().shares_room_with_local_user(&user).await? {
                continue;
            }
            let status = p["status_msg"]
                .as_str()
                .filter(|m| m.len() <= 1024)
                .map(str::to_owned);
            let ago = p["last_active_ago"].as_i64().unwrap_or(0).clamp(0, now);
            if let Some(entry) =
                self.update_presence(&user, presence, Some(status), now - ago, false)
            {
                self.tell_nodes_presence(&user, &entry).await;
                self.wake_sharing(&user).await?;
            }
        }
        Ok(())
    }

    pub async fn get_presence(self, viewer: &UserId, user: &UserId) -> Result<Value> {
        if !self.config.presence {
            return Ok(json!({ "presence": "offline" }));
        }
        if viewer != user
            && !self
                .db
                .users_sharing_rooms(viewer.as_str())
                .await?
                .iter()
                .any(|u| u == user.as_str())
        {
            return Err(Error::forbidden("You do not share a room with this user"));
        }
        let entry = self.presence.users.lock().get(user).cloned();
        Ok(match entry {
            Some(e) => content(&e, util::now_ms()),
            None => json!({ "presence": "offline" }),
        })
    }

    /// `m.presence` events of the users sharing a room with `user` that changed in (since, until].
    pub(super) async fn presence_events(
        self,
        user: &UserId,
        since: i64,
        until: i64,
    ) -> Result<Vec<Value>> {
        if !self.config.presence || since >= until {
            return Ok(vec![]);
        }
        let changed: Vec<(OwnedUserId, Entry)> = self
            .presence
            .users
            .lock()
            .iter()
            .filter(|(_, e)| e.stream > since && e.stream <= until)
            .map(|(u, e)| (u.clone(), e.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let sharing: std::collections::HashSet<String> = self
            .db
            .users_sharing_rooms(user.as_str())
            .await?
            .into_iter()
            .collect();
        let now = util::now_ms();
        Ok(changed
            .into_iter()
            .filter(|(u, _)| sharing.contains(u.as_str()))
            .map(|(u, e)| json!({ "type": "m.presence", "sender": u, "content": content(&e, now) }))
            .collect())
    }
}
