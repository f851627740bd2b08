//! Outbound PDUs: a durable queue per destination (`federation_outbox`), sent in transactions
//! of up to 50 PDUs, in order, by one task per destination. A failing destination is retried
//! with exponential backoff (1 s doubling up to `federation.max_retry_interval_ms`), reset as soon
//! as that server talks to us; after an outage it receives everything it missed, in order.

use crate::services::federation::FederationFace;
use ruma::events::room::member::MembershipState;
use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::http::Method;
use parking_lot::Mutex;
use ruma::{events::StateEventType, OwnedServerName, ServerName};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{
    services::cluster::Singleton,
    services::federation::retry::Sent,
    services::{rooms::RoomState, Services},
    store::federation::EduRow,
    util, Result,
};

const BATCH: i64 = 50;
const EDU_BATCH: i64 = 100;
/// When this process started: part of every transaction id.
static BOOT_MS: std::sync::LazyLock<i64> = std::sync::LazyLock::new(util::now_ms);

/// Ephemeral EDUs (typing, receipts, presence) kept for a destination that is down.
const MAX_EPHEMERAL: usize = 1000;

/// The signals of one destination's task, and its ephemeral EDUs (in memory: they are not
/// worth keeping across a restart, but must go through the one sender of the destination —
/// servers refuse concurrent transactions from one origin).
#[derive(Default)]
pub struct Queue {
    /// Something new was queued.
    pub data: Notify,
    /// The destination talked to us: retry now.
    pub reset: Notify,
    pub ephemeral: Mutex<std::collections::VecDeque<Value>>,
    /// The retry state, as `destinations` shows it (held across its writes).
    pub retry: tokio::sync::Mutex<super::retry::RetryState>,
}

#[derive(Default)]
pub struct Queues {
    pub next_id: crate::services::cluster::IdGen,
    pub running: Mutex<HashMap<String, Arc<Queue>>>,
}

/// The servers with joined members in a room, other than this one.
pub fn room_servers(room: &RoomState, me: &ServerName) -> Vec<OwnedServerName> {
    // Cheap checks first: only remote members' events are parsed (a local-only room costs
    // no JSON parsing on the send path).
    let mut out: Vec<OwnedServerName> = room
        .state
        .iter()
        .filter(|((t, _), _)| *t == StateEventType::RoomMember)
        .filter_map(|((_, k), p)| Some((ruma::UserId::parse(k.as_str()).ok()?, p)))
        .filter(|(u, _)| u.server_name() != me)
        .filter(|(_, p)| p.membership() == Some(MembershipState::Join))
        .map(|(u, _)| u.server_name().to_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A stored event as sent to other servers (local unsigned data removed).
pub fn outgoing_pdu(json: &str) -> Value {
    let mut v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("unsigned");
    }
    v
}

impl FederationFace<'_> {
    /// Queues events for every server in the room (but `except`), and wakes their senders.
    pub(super) async fn send_to_room_servers(
        self,
        room: &RoomState,
        event_ids: &[String],
        except: Option<&ServerName>,
    ) -> Result<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let dests: Vec<OwnedServerName> = self
            .room_destinations(room)
            .into_iter()
            .filter(|d| Some(d.as_ref()) != except)
            .collect();
        self.enqueue(&dests, event_ids).await
    }

    pub async fn enqueue(self, dests: &[OwnedServerName], event_ids: &[String]) -> Result<()> {
        let rows = self.outbox_rows(dests, event_ids);
        self.db.enqueue_outbox(&rows).await?;
        for d in dests {
            self.wake_destination(d.as_str(), false);
        }
        Ok(())
    }

    /// The servers of a room that its new local events go to (federation on, allow-list).
    pub fn room_destinations(self, room: &RoomState) -> Vec<OwnedServerName> {
        if !self.config.federation.enabled {
            return vec![];
        }
        room_servers(room, &self.server_name)
            .into_iter()
            .filter(|d| super::allowed(&self.config.federation, d))
            .collect()
    }

    /// Outbox rows (id, destination, event id) for events to destinations, ids taken in order.
    pub fn outbox_rows(
        self,
        dests: &[OwnedServerName],
        event_ids: &[String],
    ) -> Vec<(i64, String, String)> {
        let q = &self.federation_state.queues;
        let mut rows = Vec::with_capacity(dests.len() * event_ids.len());
        for d in dests {
            for e in event_ids {
                let id = q.next_id.next();
                rows.push((id, d.to_string(), e.clone()));
            }
        }
        rows
    }

    /// Starts (or wakes) a destination's sender; `reset` ends its backoff.
    pub fn wake_destination(self, dest: &str, reset: bool) {
        if !self.cluster.holds(Singleton::FederationSender) {
            // Another node sends: it is told (the queue is in the database).
            let notice = serde_json::json!({"t": "fed", "d": [dest], "r": reset}).to_string();
            self.tell_cluster_soon(vec![notice]);
            return;
        }
        if reset {
            // Nothing running: nothing queued.
            if let Some(q) = self.federation_state.queues.running.lock().get(dest) {
                q.reset.notify_one();
            }
            return;
        }
        self.destination_queue(dest).data.notify_one();
    }

    /// A destination's queue, its sender task started if it was not running.
    fn destination_queue(self, dest: &str) -> Arc<Queue> {
        let mut running = self.federation_state.queues.running.lock();
        if let Some(q) = running.get(dest) {
            return q.clone();
        }
        let q = Arc::new(Queue::default());
        running.insert(dest.to_owned(), q.clone());
        let weak = self.me.clone();
        let (dest, task_q) = (dest.to_owned(), q.clone());
        tokio::spawn(async move { run_destination(weak, dest, task_q).await });
        q
    }

    /// At start: resume every destination with queued events.
    pub async fn resume_outbox(self) -> Result<()> {
        let max = self.db.max_outbox_id().await?;
        self.federation_state.queues.next_id.raise(max);
        if !self.cluster.holds(Singleton::FederationSender) {
            return Ok(()); // another node sends
        }
        for d in self.db.outbox_destinations().await? {
            self.wake_destination(&d, false);
        }
        Ok(())
    }

    /// One transaction to `dest` (≤ 50 PDUs and ≤ 100 EDUs); Ok(None) when there was nothing
    /// to send.
    async fn send_batch(self, dest: &str, q: &Queue) -> Result<Option<Sent>> {
        let batch = self.db.outbox_batch(dest, BATCH).await?;
        let edus = self.db.edu_outbox_batch(dest, EDU_BATCH).await?;
        let ephemeral: Vec<Value> = {
            let mut e = q.ephemeral.lock();
            let n = e.len().min(EDU_BATCH as usize - edus.len());
            e.drain(..n).collect()
        };
        if batch.is_empty() && edus.is_empty() && ephemeral.is_empty() {
            return Ok(None);
        }
        let server = ServerName::parse(dest).map_err(|e| crate::Error::unknown(e.to_string()))?;
        let pdus: Vec<Value> = batch.iter().map(|(_, j, _, _)| outgoing_pdu(j)).collect();
        let edu_values: Vec<Value> = edus
            .iter()
            .map(|(_, kind, content)| {
                json!({
                    "edu_type": kind,
                    "content": serde_json::from_str::<Value>(content).unwrap_or_default(),
                })
            })
            .chain(ephemeral.iter().cloned())
            .collect();
        let body = json!({
            "origin": self.server_name.as_str(),
            "origin_server_ts": util::now_ms(),
            "pdus": pdus,
            "edus": edu_values,
        });
        // The same rows give the same txn id (a retry after a lost answer is recognised); the
        // process start time keeps ids unique across restarts, when row ids may start again.
        let ids: Vec<i64> = batch
            .iter()
            .map(|r| r.0)
            .chain(edus.iter().map(|r| r.0))
            .collect();
        let txn = if ephemeral.is_empty() {
            format!(
                "{}.{}-{}-{}",
                *BOOT_MS,
                ids.iter().min().unwrap_or(&0),
                ids.iter().max().unwrap_or(&0),
                ids.len()
            )
        } else {
            // Ephemeral EDUs are not kept in rows: a fresh id each time.
            format!("{}.e{}", *BOOT_MS, util::random_string(12))
        };
        let sent = self
            .federation_request(
                &server,
                Method::PUT,
                &format!("/_matrix/federation/v1/send/{txn}"),
                Some(&body),
            )
            .await;
        self.metrics.outgoing_transaction(sent.is_ok());
        if let Err(e) = sent {
            // Put the ephemeral EDUs back for the next attempt (oldest dropped beyond a bound).
            let mut queue = q.ephemeral.lock();
            for edu in ephemeral.into_iter().rev() {
                queue.push_front(edu);
            }
            while queue.len() > MAX_EPHEMERAL {
                queue.pop_front();
            }
            return Err(e);
        }
        let pdu_ids: Vec<i64> = batch.iter().map(|r| r.0).collect();
        let edu_ids: Vec<i64> = edus.iter().map(|r| r.0).collect();
        self.db.outbox_done(dest, &pdu_ids, &edu_ids).await?;
        Ok(Some(Sent {
            pdus: batch
                .into_iter()
                .map(|(_, _, room, so)| (room, so))
                .collect(),
        }))
    }

    /// Plans EDU rows for destinations (ids allocated here); insert them with
    /// `Db::insert_edu_outbox` in the transaction that makes the change, then `wake_edus`.
    pub fn plan_edus(self, dests: &[OwnedServerName], kind: &str, content: &Value) -> Vec<EduRow> {
        let text = content.to_string();
        dests
            .iter()
            .filter(|d| super::allowed(&self.config.federation, d))
            .map(|d| {
                let id = self.federation_state.queues.next_id.next();
                (id, d.to_string(), kind.to_owned(), text.clone())
            })
            .collect()
    }

    /// Wakes the senders of queued EDU rows (after their transaction committed).
    pub fn wake_edus(self, rows: &[EduRow]) {
        let mut dests: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        dests.sort_unstable();
        dests.dedup();
        for d in dests {
            self.wake_destination(d, false);
        }
    }

    /// Queues EDUs on their own (no other change to commit with them) and wakes the senders.
    pub(super) async fn queue_edus(self, rows: Vec<EduRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        crate::store::Db::insert_edu_outbox(&mut tx.tx, &rows).await?;
        tx.commit().await?;
        self.wake_edus(&rows);
        Ok(())
    }
}

async fn run_destination(weak: Weak<Services>, dest: String, q: Arc<Queue>) {
    // A backoff persisted by an earlier run goes on from where it was.
    let mut delay = match weak.upgrade() {
        Some(s) => Duration::from_millis(s.federation().load_retry_state(&dest, &q.retry).await),
        None => return,
    };
    loop {
        let Some(s) = weak.upgrade() else { return };
        if !s.cluster.holds(Singleton::FederationSender) {
            // Another node of the cluster sends now (this one lost its link).
            s.federation_state.queues.running.lock().remove(&dest);
            return;
        }
        let cap = Duration::from_millis(s.config.federation.max_retry_interval_ms.max(1000));
        let res = s.federation().send_batch(&dest, &q).await;
        match res {
            Ok(Some(sent)) => {
                s.federation().record_success(&q.retry, sent).await;
                delay = Duration::ZERO;
                continue;
            }
            Ok(None) => {
                s.federation().record_idle(&q.retry).await;
                drop(s);
                delay = Duration::ZERO;
                // Idle: wait for news (checking now and then that the server still runs).
                tokio::select! {
                    _ = q.data.notified() => {}
                    _ = q.reset.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
            Err(e) => {
                s.metrics.federation_retries.inc();
                delay = if delay.is_zero() {
                    Duration::from_secs(1)
                } else {
                    (delay * 2).min(cap)
                };
                s.federation().record_failure(&q.retry, delay).await;
                drop(s);
                tracing::info!(destination = %dest, error = %e.message, retry_in = ?delay, "federation send failed");
                tokio::select! {
                    _ = q.reset.notified() => { delay = Duration::ZERO; }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl FederationFace<'_> {
    /// Sends an EDU now to the servers of a room (best effort: typing and receipts are not
    /// queued).
    pub async fn send_edu_to_room(self, room: &ruma::RoomId, edu: Value) {
        if !self.config.federation.enabled {
            return;
        }
        let members = match self.db.members_of(&[room.to_string()]).await {
            Ok(m) => m,
            Err(_) => return,
        };
        let users: Vec<ruma::OwnedUserId> = members
            .iter()
            .filter_map(|(_, u)| ruma::UserId::parse(u.as_str()).ok())
            .collect();
        let dests = super::edus::remote_servers(users.iter().map(|u| &**u), &self.server_name);
        self.send_edu_to_servers(dests, edu);
    }

    /// Sends an ephemeral EDU to these servers with their next transaction (kept in memory only,
    /// at most 1 000 per destination that is down).
    pub fn send_edu_to_servers(self, dests: Vec<OwnedServerName>, edu: Value) {
        let dests: Vec<OwnedServerName> = dests
            .into_iter()
            .filter(|d| super::allowed(&self.config.federation, d))
            .collect();
        if dests.is_empty() {
            return;
        }
        if !self.cluster.holds(Singleton::FederationSender) {
            // The sender is another node: the EDU goes to it in a notice (dropped when too big
            // for one: it is ephemeral).
            let notice = json!({"t": "edu", "d": dests, "e": edu}).to_string();
            if notice.len() <= crate::services::streams::MAX_NOTICE {
                self.tell_cluster_soon(vec![notice]);
            } else {
                tracing::debug!(
                    bytes = notice.len(),
                    "ephemeral EDU too big for a cluster notice"
                );
            }
            return;
        }
        for d in dests {
            if !super::allowed(&self.config.federation, &d) {
                continue;
            }
            let q = self.destination_queue(d.as_str());
            {
                let mut e = q.ephemeral.lock();
                if e.len() >= MAX_EPHEMERAL {
                    e.pop_front();
                }
                e.push_back(edu.clone());
            }
            q.data.notify_one();
        }
    }
}
