//! HTTP pushers: `/pushers/set` and delivery to push gateways (`POST /_matrix/push/v1/notify`).
//!
//! Delivery runs in its own task, never on the send path: persisting an event only records the
//! users who got a notification and wakes the task. Each pusher's progress (`last_stream`) is
//! stored, so a restart resumes where delivery stopped. A failing gateway is retried with
//! exponential backoff; pushkeys the gateway rejects are removed.

use crate::services::push::PushFace;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    services::{outbound::read_capped, requester::Requester, Services},
    store::push::{PushActionRow, PusherRow},
    util, Error, Result,
};

/// Notifications sent per pusher per round (the rest follow in the next round).
const BATCH: i64 = 20;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// How often the task looks at pushers waiting for a retry.
const TICK: Duration = Duration::from_secs(1);
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Largest push gateway answer read (`{"rejected": [pushkeys]}`).
const MAX_GATEWAY_ANSWER: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct SetPusher {
    pub pushkey: Option<String>,
    /// `null` deletes the pusher.
    pub kind: Option<String>,
    pub app_id: Option<String>,
    pub app_display_name: Option<String>,
    pub device_display_name: Option<String>,
    pub profile_tag: Option<String>,
    pub lang: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub append: bool,
}

fn required(v: Option<String>, name: &str) -> Result<String> {
    v.ok_or_else(|| Error::missing_param(format!("{name} is required")))
}

/// A pusher's place in the retry schedule.
struct Backoff {
    next: Instant,
    delay: Duration,
}

enum Outcome {
    Delivered,
    /// The gateway rejected the pushkey: the pusher is removed.
    Rejected,
    /// The notification cannot be delivered (the gateway refused it): skip it.
    Dropped,
    /// Try again later.
    Retry,
}

impl PushFace<'_> {
    pub async fn set_pusher(self, r: &Requester, b: SetPusher) -> Result<()> {
        let pushkey = required(b.pushkey, "pushkey")?;
        let app_id = required(b.app_id, "app_id")?;
        if pushkey.len() > 512 || app_id.len() > 64 {
            return Err(Error::invalid_param("pushkey or app_id too long"));
        }
        let Some(kind) = b.kind else {
            self.db
                .delete_pusher(r.user_id.as_str(), &app_id, &pushkey)
                .await?;
            return Ok(());
        };
        if kind != "http" {
            return Err(Error::invalid_param(
                "Only 'http' pushers are supported by this server",
            ));
        }
        let url = b
            .data
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::missing_param("data.url is required for http pushers"))?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| Error::invalid_param("data.url is not a valid URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.path() != NOTIFY_PATH {
            return Err(Error::invalid_param(format!(
                "data.url must be an http(s) URL ending in {NOTIFY_PATH}"
            )));
        }
        let data = serde_json::to_string(&b.data)?;
        if data.len() > 4096 {
            return Err(Error::too_large("Pusher data too large"));
        }
        let row = PusherRow {
            user_id: r.user_id.to_string(),
            app_id,
            pushkey,
            kind,
            app_display_name: required(b.app_display_name, "app_display_name")?,
            device_display_name: required(b.device_display_name, "device_display_name")?,
            profile_tag: b.profile_tag,
            lang: required(b.lang, "lang")?,
            data,
            device_id: Some(r.device_id.clone()),
            created_ts: util::now_ms(),
            // Only notifications from now on.
            last_stream: self.events_stream.current(),
        };
        self.db.upsert_pusher(&row, b.append).await?;
        Ok(())
    }

    pub async fn pushers(self, user: &UserId) -> Result<Value> {
        let list: Vec<Value> = self
            .db
            .pushers_of(user.as_str())
            .await?
            .into_iter()
            .map(|p| {
                json!({
                    "pushkey": p.pushkey,
                    "kind": p.kind,
                    "app_id": p.app_id,
                    "app_display_name": p.app_display_name,
                    "device_display_name": p.device_display_name,
                    "profile_tag": p.profile_tag,
                    "lang": p.lang,
                    "data": serde_json::from_str::<Value>(&p.data).unwrap_or_else(|_| json!({})),
                })
            })
            .collect();
        Ok(json!({ "pushers": list }))
    }

    /// Hands users with new notifications to the pusher task.
    pub fn wake_pushers(self, users: impl IntoIterator<Item = String>) {
        if !self
            .cluster
            .holds(crate::services::cluster::Singleton::Pusher)
        {
            // Another node of the cluster delivers: it is told whom to look at.
            let users: Vec<String> = users.into_iter().collect();
            let notices = users
                .chunks(100)
                .map(|c| json!({"t": "push", "u": c}).to_string())
                .collect();
            self.tell_cluster_soon(notices);
            return;
        }
        let mut pending = self.push_state.pending.lock();
        let before = pending.len();
        pending.extend(users);
        if pending.len() != before {
            self.push_state.wake.notify_one();
        }
    }

    /// Every user with a pusher is looked at (a start, or this node took the delivery over).
    pub async fn catch_up_pushers(self) {
        if !self
            .cluster
            .holds(crate::services::cluster::Singleton::Pusher)
        {
            return;
        }
        match self.db.users_with_pushers().await {
            Ok(users) => {
                self.push_state.pending.lock().extend(users);
                self.push_state.wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "pusher catch-up failed"),
        }
    }

    /// Starts the delivery task; it stops when the services are dropped.
    pub fn start_pusher_task(self) {
        let weak: Weak<Services> = self.me.clone();
        let wake = self.push_state.wake.clone();
        // Gateways are reached only at addresses the outbound policy allows (names through the
        // DNS hook, IP literals in push_one).
        let dns = crate::services::outbound::GuardedDns {
            pinned: Default::default(),
            policy: self.outbound.general.clone(),
        };
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(dns))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "pusher task cannot start");
                    return;
                }
            };
            let mut backoff: HashMap<(String, String, String), Backoff> = HashMap::new();
            // Catch up after a restart: every pusher may have something left to send (on a
            // cluster, the node that takes the delivery over does it then).
            if let Some(s) = weak.upgrade() {
                s.push().catch_up_pushers().await;
            }
            loop {
                let Some(s) = weak.upgrade() else { return };
                if !s.cluster.holds(crate::services::cluster::Singleton::Pusher) {
                    backoff.clear();
                    drop(s);
                    let _ = tokio::time::timeout(TICK, wake.notified()).await;
                    continue;
                }
                let mut users: HashSet<String> = std::mem::take(&mut *s.push_state.pending.lock());
                let now = Instant::now();
                users.extend(
                    backoff
                        .iter()
                        .filter(|(_, b)| b.next <= now)
                        .map(|((u, _, _), _)| u.clone()),
                );
                if !users.is_empty() {
                    let users: Vec<String> = users.into_iter().collect();
                    if let Err(e) = s.push().deliver(&client, &users, &mut backoff).await {
                        tracing::warn!(error = %e, "push delivery round failed");
                        // Nothing was lost: progress is only stored after delivery.
                        s.push_state.pending.lock().extend(users);
                    }
                }
                let again = !s.push_state.pending.lock().is_empty();
                drop(s);
                if !again {
                    let _ = tokio::time::timeout(TICK, wake.notified()).await;
                }
            }
        });
    }

    async fn deliver(
        self,
        client: &reqwest::Client,
        users: &[String],
        backoff: &mut HashMap<(String, String, String), Backoff>,
    ) -> Result<()> {
        let pushers = self.db.pushers_of_users(users).await?;
        let now = Instant::now();
        let mut unread: HashMap<String, i64> = HashMap::new();
        for p in pushers {
            let key = (p.user_id.clone(), p.app_id.clone(), p.pushkey.clone());
            if backoff.get(&key).is_some_and(|b| b.next > now) {
                continue;
            }
            let rows = self
                .db
                .notifications_after(&p.user_id, p.last_stream, BATCH)
                .await?;
            if rows.is_empty() {
                backoff.remove(&key);
                continue;
            }
            let count = match unread.get(&p.user_id) {
                Some(c) => *c,
                None => {
                    let c = self.db.total_unread(&p.user_id).await?;
                    unread.insert(p.user_id.clone(), c);
                    c
                }
            };
            let mut progress = p.last_stream;
            let mut removed = false;
            for row in &rows {
                let outcome = if row.is_read {
                    Outcome::Dropped
                } else {
                    self.push_one(client, &p, row, count).await
                };
                match outcome {
                    Outcome::Delivered | Outcome::Dropped => {
                        progress = row.stream_ordering;
                        backoff.remove(&key);
                    }
                    Outcome::Rejected => {
                        tracing::info!(user = %p.user_id, app_id = %p.app_id, "push gateway rejected the pushkey; pusher removed");
                        self.db
                            .delete_pusher(&p.user_id, &p.app_id, &p.pushkey)
                            .await?;
                        backoff.remove(&key);
                        removed = true;
                        break;
                    }
                    Outcome::Retry => {
                        let delay = backoff
                            .get(&key)
                            .map(|b| (b.delay * 2).min(MAX_RETRY))
                            .unwrap_or(FIRST_RETRY);
                        backoff.insert(
                            key.clone(),
                            Backoff {
                                next: Instant::now() + delay,
                                delay,
                            },
                        );
                        break;
                    }
                }
            }
            if !removed && progress > p.last_stream {
                self.db
                    .set_pusher_progress(&p.user_id, &p.app_id, &p.pushkey, progress)
                    .await?;
                if rows.len() as i64 == BATCH {
                    self.push_state.pending.lock().insert(p.user_id.clone());
                }
            }
        }
        Ok(())
    }

    /// Sends one notification to a pusher's gateway.
    async fn push_one(
        self,
        client: &reqwest::Client,
        p: &PusherRow,
        row: &PushActionRow,
        unread: i64,
    ) -> Outcome {
        let body = match self.notification_body(p, row, unread).await {
            Ok(Some(b)) => b,
            Ok(None) => return Outcome::Dropped,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build push notification");
                return Outcome::Retry;
            }
        };
        let data: Value = serde_json::from_str(&p.data).unwrap_or_default();
        let Some(url) = data
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| reqwest::Url::parse(u).ok())
        else {
            return Outcome::Dropped;
        };
        if !self.outbound.general.url_allowed(&url) {
            tracing::info!(user = %p.user_id, "push gateway at a refused address; will retry");
            return Outcome::Retry;
        }
        match client.post(url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                let answer: Value = read_capped(resp, MAX_GATEWAY_ANSWER)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let rejected = answer["rejected"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|k| k.as_str() == Some(p.pushkey.as_str())));
                if rejected {
                    Outcome::Rejected
                } else {
                    Outcome::Delivered
                }
            }
            Ok(resp)
                if resp.status().is_client_error()
                    && resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(status = %resp.status(), "push gateway refused a notification");
                Outcome::Dropped
            }
            Ok(resp) => {
                tracing::warn!(status = %resp.status(), "push gateway failed; will retry");
                Outcome::Retry
            }
            Err(e) => {
                tracing::warn!(error = %e, "push gateway unreachable; will retry");
                Outcome::Retry
            }
        }
    }

    /// The notify request body, in the pusher's format (`event_id_only` or full).
    async fn notification_body(
        self,
        p: &PusherRow,
        row: &PushActionRow,
        unread: i64,
    ) -> Result<Option<Value>> {
        let data: Map<String, Value> = serde_json::from_str(&p.data).unwrap_or_default();
        let actions: Vec<Value> = serde_json::from_str(&row.actions).unwrap_or_default();
        let mut tweaks = Map::new();
        for a in &actions {
            if let Some(t) = a.get("set_tweak").and_then(Value::as_str) {
                tweaks.insert(
                    t.to_owned(),
                    a.get("value").cloned().unwrap_or(Value::Bool(true)),
                );
            }
        }
        let prio = if row.highlight || tweaks.contains_key("sound") {
            "high"
        } else {
            "low"
        };
        let mut device_data = data.clone();
        device_data.remove("url");
        let mut n = json!({
            "event_id": row.event_id,
            "room_id": row.room_id,
            "prio": prio,
            "counts": { "unread": unread },
            "devices": [{
                "app_id": p.app_id,
                "pushkey": p.pushkey,
                "pushkey_ts": p.created_ts / 1000,
                "data": device_data,
                "tweaks": tweaks,
            }],
        });
        if data.get("format").and_then(Value::as_str) != Some("event_id_only") {
            let Some(ev) = self.db.get_event(&row.event_id).await? else {
                return Ok(None);
            };
            let event: Value = serde_json::from_str(&ev.json)?;
            let state = self
                .db
                .current_state_events(std::slice::from_ref(&ev.room_id), Some(&["m.room.name"]))
                .await?;
            let members = self
                .db
                .current_members(
                    std::slice::from_ref(&ev.room_id),
                    std::slice::from_ref(&ev.sender),
                )
                .await?;
            let content_of = |rows: &[crate::store::events::EventRow], field: &str| {
                rows.first().and_then(|r| {
                    serde_json::from_str::<Value>(&r.json).ok()?["content"][field]
                        .as_str()
                        .map(str::to_owned)
                })
            };
            n["type"] = json!(ev.kind);
            n["sender"] = json!(ev.sender);
            if let Some(name) = content_of(&members, "displayname") {
                n["sender_display_name"] = json!(name);
            }
            if let Some(name) = content_of(&state, "name") {
                n["room_name"] = json!(name);
            }
            n["content"] = event["content"].clone();
            if ev.kind == "m.room.member" {
                n["user_is_target"] = json!(ev.state_key.as_deref() == Some(p.user_id.as_str()));
            }
        }
        Ok(Some(json!({ "notification": n })))
    }
}
