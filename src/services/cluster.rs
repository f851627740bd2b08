//! Several Palabre nodes on one PostgreSQL (docs/high-availability.md). Each node holds a slot
//! (an advisory lock on its own connection, freed by PostgreSQL when the node dies), listens to
//! the notices every node sends at commit (`LISTEN palabre`), and reads the streams' "persisted
//! up to" positions from the database when a notice comes (and every second, in case one was
//! lost). Caches that other nodes' writes make stale are told by notices too.
//!
//! On SQLite there is one node: nothing here runs, the slot is 0 and ids go 1, 2, 3…

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{
    services::{streams::StreamTracker, Services},
    store::cluster::{NodeLink, Notices, RoomLock, RoomLocks, SLOTS},
};

/// How often a node reads the streams again without a notice, pings its link and clears the
/// positions of dead nodes: the worst case of a lost notice.
const TICK: Duration = Duration::from_secs(1);
/// Connections of a node that hold room locks.
const ROOM_LOCK_CONNECTIONS: u32 = 16;

/// Work that one node of the cluster does for all, elected with an advisory lock on the
/// holder's link (when the holder dies, its session ends and another node takes the lock at
/// its next tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Singleton {
    /// Sends every destination's queue (the outbox is in the database; other nodes tell the
    /// holder what they queued).
    FederationSender = 0,
    /// The account validity job (reminders, expiries).
    Validity = 1,
    /// The annuaire's replication with the other servers (pulls, and the pushes announcing
    /// local changes).
    Annuaire = 2,
    /// Push notifications to the push gateways (each pusher's progress is in the database;
    /// other nodes tell the holder whom to look at).
    Pusher = 3,
}

const SINGLETONS: [Singleton; 4] = [
    Singleton::FederationSender,
    Singleton::Validity,
    Singleton::Annuaire,
    Singleton::Pusher,
];

impl Singleton {
    /// Its name in the metrics and the log.
    pub fn name(self) -> &'static str {
        match self {
            Singleton::FederationSender => "federation_sender",
            Singleton::Validity => "validity",
            Singleton::Annuaire => "annuaire",
            Singleton::Pusher => "pusher",
        }
    }
}

/// This node's place in the cluster.
pub struct Cluster {
    held: [std::sync::atomic::AtomicBool; 4],
    slot: Arc<AtomicI64>,
    url: String,
    link: tokio::sync::Mutex<Option<NodeLink>>,
    room_locks: Option<RoomLocks>,
    /// Set when the node leaves: the notice listener closes its connection.
    leaving: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    /// A node alone on its database (SQLite).
    pub fn alone() -> Self {
        Self {
            held: Default::default(),
            slot: Arc::new(AtomicI64::new(0)),
            url: String::new(),
            link: tokio::sync::Mutex::new(None),
            room_locks: None,
            leaving: tokio::sync::watch::channel(false).0,
        }
    }

    /// Joins the cluster of the PostgreSQL database at `url`: claims a slot.
    pub async fn join(url: &str) -> anyhow::Result<Self> {
        let hint = (rand::random::<u32>() as i64).rem_euclid(SLOTS);
        let link = NodeLink::claim(url, hint).await?;
        tracing::info!(slot = link.slot, "joined the cluster");
        Ok(Self {
            held: Default::default(),
            slot: Arc::new(AtomicI64::new(link.slot)),
            url: url.to_owned(),
            link: tokio::sync::Mutex::new(Some(link)),
            room_locks: Some(RoomLocks::new(url, ROOM_LOCK_CONNECTIONS)?),
            leaving: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn shared(&self) -> bool {
        self.room_locks.is_some()
    }

    /// Does this node do that work now? (Always, alone.)
    pub fn holds(&self, s: Singleton) -> bool {
        !self.shared() || self.held[s as usize].load(Ordering::Acquire)
    }

    /// This node's slot (0 alone).
    pub fn slot(&self) -> i64 {
        self.slot.load(Ordering::Acquire)
    }

    /// Locks a room across the cluster (`None` alone: the process's room lock is enough).
    pub async fn lock_room(&self, room_id: &str) -> crate::Result<Option<RoomLock>> {
        match &self.room_locks {
            Some(l) => Ok(Some(l.lock(room_id).await?)),
            None => Ok(None),
        }
    }

    /// Leaves the cluster: the slot and the singletons held are free for the others at once.
    pub async fn leave(&self) {
        self.leaving.send_replace(true);
        if let Some(link) = self.link.lock().await.take() {
            for h in &self.held {
                h.store(false, Ordering::Release);
            }
            link.close().await;
        }
        if let Some(l) = &self.room_locks {
            l.close().await;
        }
    }
}

/// Ids unique across the nodes without asking the database: the node in slot `s` makes
/// `k * SLOTS + s` (k rising); alone it makes 1, 2, 3…
#[derive(Default)]
pub struct IdGen {
    k: AtomicI64,
    slot: std::sync::OnceLock<Arc<AtomicI64>>,
}

impl IdGen {
    fn stride(&self) -> i64 {
        if self.slot.get().is_some() {
            SLOTS
        } else {
            1
        }
    }

    /// Starts after `max`, making ids of this node's slot from now on when in a cluster.
    pub fn start(&self, max: i64, cluster: &Cluster) {
        if cluster.shared() {
            let _ = self.slot.set(cluster.slot.clone());
        }
        self.raise(max);
    }

    /// Makes sure the next id is above `max`.
    pub fn raise(&self, max: i64) {
        self.k.fetch_max(max / self.stride(), Ordering::SeqCst);
    }

    pub fn next(&self) -> i64 {
        let k = self.k.fetch_add(1, Ordering::SeqCst) + 1;
        match self.slot.get() {
            Some(s) => k * SLOTS + s.load(Ordering::Acquire),
            None => k,
        }
    }
}

/// The notice that a device's tokens (or some tokens) are revoked.
pub fn tokens_notice(device: Option<(&UserId, &str)>, hashes: &[String]) -> Vec<String> {
    if let Some((u, d)) = device {
        return vec![json!({"t": "tok", "u": u, "d": d}).to_string()];
    }
    // Hashes are 43-64 characters: a notice carries about a hundred.
    hashes
        .chunks(100)
        .map(|c| json!({"t": "tok", "h": c}).to_string())
        .collect()
}

impl Services {
    fn stream(&self, name: &str) -> Option<&StreamTracker> {
        self.streams().into_iter().find(|t| t.name == name)
    }

    fn streams(&self) -> [&StreamTracker; 5] {
        [
            &self.events_stream,
            &self.account_data_stream,
            &self.to_device_stream,
            &self.device_list_stream,
            &self.receipt_stream,
        ]
    }

    /// Starts the cluster's tasks (nothing alone).
    pub fn start_cluster(self: &Arc<Self>) {
        self.show_singletons();
        if !self.cluster.shared() {
            return;
        }
        let weak = Arc::downgrade(self);
        let url = self.cluster.url.clone();
        let leaving = self.cluster.leaving.subscribe();
        tokio::spawn(listen(weak.clone(), url, leaving));
        for t in self.streams() {
            let name = t.name;
            tokio::spawn(follow_stream(weak.clone(), name));
        }
        tokio::spawn(keep_link(weak));
    }

    /// Sends notices from code that cannot wait (in their own task).
    pub fn tell_cluster_soon(&self, notices: Vec<String>) {
        if !self.cluster.shared() || notices.is_empty() {
            return;
        }
        let weak = self.me.clone();
        tokio::spawn(async move {
            if let Some(s) = weak.upgrade() {
                s.tell_cluster(notices).await;
            }
        });
    }

    /// A notice from a node (this one included).
    fn on_notice(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            tracing::warn!(notice = text, "unreadable cluster notice");
            return;
        };
        if v["n"].as_i64() == Some(self.cluster.slot()) {
            return; // this node's own change, applied already
        }
        match v["t"].as_str() {
            Some("s") => {
                let (Some(name), Some(pos)) = (v["s"].as_str(), v["p"].as_i64()) else {
                    return;
                };
                let Some(t) = self.stream(name) else { return };
                let wake = if v["all"] == true {
                    None
                } else {
                    let users: Vec<OwnedUserId> = v["u"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|u| UserId::parse(u.as_str()?).ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(users)
                };
                if let (true, Some(users)) = (t.name == "account_data", &wake) {
                    // Push rules and ignored users are account data, cached.
                    self.push().forget_rulesets(users);
                    self.sync().forget_ignored(users);
                }
                if wake.as_ref().is_none_or(|u| !u.is_empty()) {
                    self.wake(t.defer(pos, wake));
                }
                t.stale.notify_one();
            }
            Some("fed") if self.cluster.holds(Singleton::FederationSender) => {
                let reset = v["r"] == true;
                for d in v["d"].as_array().into_iter().flatten() {
                    if let Some(d) = d.as_str() {
                        self.federation().wake_destination(d, reset);
                    }
                }
            }
            Some("edu") if self.cluster.holds(Singleton::FederationSender) => {
                let dests: Vec<ruma::OwnedServerName> = v["d"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| ruma::ServerName::parse(d.as_str()?).ok())
                    .collect();
                self.federation().send_edu_to_servers(dests, v["e"].clone());
            }
            Some("push") if self.cluster.holds(Singleton::Pusher) => {
                let users = v["u"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(str::to_owned));
                self.push().wake_pushers(users);
            }
            Some("ann") => {
                let users: Vec<String> = v["u"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect();
                let local = v["l"] == true;
                let weak = self.me.clone();
                tokio::spawn(async move {
                    let Some(s) = weak.upgrade() else { return };
                    s.policy().annuaire_changed_elsewhere(&users, local).await;
                });
            }
            Some("annpull") if self.cluster.holds(Singleton::Annuaire) => {
                if let Some(peer) = v["s"]
                    .as_str()
                    .and_then(|p| ruma::ServerName::parse(p).ok())
                {
                    self.policy().annuaire_pull_soon(peer);
                }
            }
            Some("adm") => {
                let weak = self.me.clone();
                tokio::spawn(async move {
                    let Some(s) = weak.upgrade() else { return };
                    if let Err(e) = s.admin().load_state().await {
                        tracing::warn!(error = %e.message, "cannot read the admin flags again");
                    }
                });
            }
            Some("typ" | "pres") => {
                let weak = self.me.clone();
                let typing = v["t"] == "typ";
                tokio::spawn(async move {
                    let Some(s) = weak.upgrade() else { return };
                    if typing {
                        s.sync().typing_from_node(&v).await;
                    } else {
                        s.sync().presence_from_node(&v).await;
                    }
                });
            }
            Some("tok") => {
                if let (Some(u), Some(d)) = (
                    v["u"].as_str().and_then(|u| UserId::parse(u).ok()),
                    v["d"].as_str(),
                ) {
                    self.accounts().forget_device_here(&u, d);
                }
                if let Some(h) = v["h"].as_array() {
                    let hashes: Vec<String> = h
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect();
                    self.accounts().forget_tokens_here(&hashes);
                }
            }
            _ => {}
        }
    }

    /// The notices were perhaps lost (the connection dropped): every cache another node may
    /// have made stale is dropped, every stream read again, every waiting request woken.
    fn on_notices_lost(&self) {
        // Once more a little later: notices sent until the listener is back are lost too.
        let weak = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TICK).await;
            if let Some(s) = weak.upgrade() {
                s.accounts().forget_all_tokens_here();
                s.notifier.notify_all();
            }
        });
        self.accounts().forget_all_tokens_here();
        let weak = self.me.clone();
        tokio::spawn(async move {
            let Some(s) = weak.upgrade() else { return };
            if let Err(e) = s.admin().load_state().await {
                tracing::warn!(error = %e.message, "cannot read the admin flags again");
            }
        });
        for t in self.streams() {
            t.stale.notify_one();
        }
        self.notifier.notify_all();
    }

    /// The singletons this node holds, in the metrics.
    fn show_singletons(&self) {
        for sg in SINGLETONS {
            self.metrics
                .cluster_singletons
                .with_label_values(&[sg.name()])
                .set(self.cluster.holds(sg) as i64);
        }
    }

    /// This node has just become the holder of a singleton: it picks the work up from the
    /// database.
    async fn on_singleton_gained(&self, sg: Singleton) {
        match sg {
            Singleton::FederationSender => {
                if let Err(e) = self.federation().resume_outbox().await {
                    tracing::warn!(error = %e.message, "cannot resume the federation queues");
                }
            }
            Singleton::Validity => {}
            // Pulls every peer now, and announces what changed while no node held it.
            Singleton::Annuaire => self.policy().annuaire_took_over(),
            Singleton::Pusher => self.push().catch_up_pushers().await,
        }
    }

    /// Sends notices to the other nodes (logged, not failed, when the database refuses: the
    /// tick and the caches' lifetimes bound what a lost notice costs).
    pub async fn tell_cluster(&self, notices: Vec<String>) {
        if !self.cluster.shared() {
            return;
        }
        for n in notices {
            if let Err(e) = self.db.notify(&n).await {
                tracing::warn!(error = %e, "cannot send a cluster notice");
            }
        }
    }
}

async fn listen(
    weak: std::sync::Weak<Services>,
    url: String,
    mut leaving: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    let mut notices = loop {
        match Notices::listen(&url).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen to the cluster's notices; retrying");
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    loop {
        let next = tokio::select! {
            n = notices.next() => n,
            _ = leaving.wait_for(|l| *l) => return, // the connection closes with `notices`
        };
        let Some(s) = weak.upgrade() else { return };
        match next {
            Ok(Some(text)) => s.on_notice(&text),
            Ok(None) => {
                tracing::warn!("cluster notices connection lost; catching up");
                s.on_notices_lost();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster notices unavailable; retrying");
                s.on_notices_lost();
                drop(s);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Reads the stream's "persisted up to" again on each notice (coalesced: one read at a time)
/// and every tick.
async fn follow_stream(weak: std::sync::Weak<Services>, name: &'static str) {
    loop {
        let Some(s) = weak.upgrade() else { return };
        let Some(t) = s.stream(name) else { return };
        match s.db.stream_upto(name).await {
            Ok(upto) => s.wake(t.advance_to(upto)),
            Err(e) => tracing::warn!(stream = name, error = %e, "cannot read the stream position"),
        }
        // The services must be droppable while this task waits.
        let stale = t.stale.clone();
        drop(s);
        let _ = tokio::time::timeout(TICK, stale.notified()).await;
    }
}

/// Keeps the node's slot: pings its connection every tick and claims a slot again if it was
/// lost (the positions it had in flight were taken back: their writes fail and are retried);
/// and clears the positions in flight of dead nodes.
async fn keep_link(weak: std::sync::Weak<Services>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = weak.upgrade() else { return };
        let mut link = s.cluster.link.lock().await;
        let alive = match link.as_mut() {
            Some(l) => matches!(tokio::time::timeout(TICK * 3, l.ping()).await, Ok(Ok(()))),
            None => return, // left the cluster
        };
        if !alive {
            for h in &s.cluster.held {
                h.store(false, Ordering::Release);
            }
            tracing::warn!("cluster link lost; claiming a slot again");
            match NodeLink::claim(&s.cluster.url, s.cluster.slot()).await {
                Ok(l) => {
                    s.cluster.slot.store(l.slot, Ordering::Release);
                    tracing::info!(slot = l.slot, "joined the cluster again");
                    *link = Some(l);
                }
                Err(e) => tracing::warn!(error = %e, "cannot join the cluster again"),
            }
        }
        let mut gained = vec![];
        if let Some(l) = link.as_mut() {
            for sg in SINGLETONS {
                if s.cluster.held[sg as usize].load(Ordering::Acquire) {
                    continue;
                }
                match l.try_hold(sg as i32).await {
                    Ok(true) => {
                        s.cluster.held[sg as usize].store(true, Ordering::Release);
                        gained.push(sg);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot try a singleton's lock"),
                }
            }
        }
        drop(link);
        s.show_singletons();
        for sg in gained {
            tracing::info!(singleton = sg.name(), "this node took over");
            s.on_singleton_gained(sg).await;
        }
        s.admin().adopt_orphan_jobs().await;
        match s.db.reap_dead_positions().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(positions = n, "positions in flight of a dead node cleared");
                for t in s.streams() {
                    t.stale.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot clear dead nodes' positions"),
        }
    }
}
