//! The annuaire (TCHAP.md §6): every user of the federation known here, searchable by every
//! agent, replicated between the federation's Palabre servers over signed federation requests
//! (a change stream with positions, pulled periodically and on a peer's push), never through a
//! room. Also the email → account mapping the identity endpoints (§1) answer from.
//!
//! Local entries are computed from `users`, `user_threepids`, the `im.vector.hide_profile`
//! account data, deactivation and the `account_expired` hook, each time
//! [`Services::annuaire_touch`] is called; a changed entry gets a new position (one row per
//! user), updates the search index and schedules a push to the peers.

pub mod index;
mod replication;

use crate::services::policy::PolicyFace;
use std::sync::atomic::{AtomicI64, Ordering};

use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{
    services::policy::email,
    store::annuaire::{EntryRow, LocalFacts},
    util, Error, Result,
};

/// Users whose entries are computed per batch (the backfill at start).
const BACKFILL_BATCH: i64 = 1000;
/// Entries read per page when building the index.
const LOAD_PAGE: i64 = 5000;
/// The cluster lock of local entry writes (a room lock's name that no room id can have).
const ANNUAIRE_LOCK: &str = "annuaire:local-entries";

/// The annuaire's in-memory state.
pub struct Annuaire {
    /// The search index of the visible entries.
    pub index: parking_lot::RwLock<index::Index>,
    /// Serialises local entry writes: positions are allocated and committed in order, so a
    /// peer reading `position > since` never misses a row committed later.
    write: tokio::sync::Mutex<()>,
    position: AtomicI64,
    /// Wakes the push task (local changes to announce).
    push_tx: tokio::sync::mpsc::UnboundedSender<()>,
    push_rx: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    /// Peers to pull from now (they announced changes).
    pull_tx: tokio::sync::mpsc::UnboundedSender<OwnedServerName>,
    pull_rx: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<OwnedServerName>>>,
}

impl Default for Annuaire {
    fn default() -> Self {
        let (pull_tx, pull_rx) = tokio::sync::mpsc::unbounded_channel();
        let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            index: Default::default(),
            write: Default::default(),
            position: AtomicI64::new(0),
            push_tx,
            push_rx: parking_lot::Mutex::new(Some(push_rx)),
            pull_tx,
            pull_rx: parking_lot::Mutex::new(Some(pull_rx)),
        }
    }
}

/// Whether `im.vector.hide_profile` content asks to be hidden.
pub(super) fn hidden(content: Option<&str>) -> bool {
    content
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|v| v.get("hide_profile").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// Who asks `internal-info`.
pub enum InternalInfoCaller<'a> {
    /// An X-Matrix-signed request from this server.
    Signed(&'a ruma::ServerName),
    /// An unsigned request: from the loopback interface or not, carrying a proxy's forwarding
    /// header or not.
    Unsigned { loopback: bool, proxied: bool },
}

impl PolicyFace<'_> {
    /// The body of the `annuaire_touch` hook: recompute these local users' entries.
    pub(in crate::services::policy) async fn annuaire_touch_users(self, users: &[&UserId]) {
        if !self.policy_rules.enabled() {
            return;
        }
        let users: Vec<String> = users
            .iter()
            .filter(|u| self.is_local(u))
            .map(|u| u.to_string())
            .collect();
        if users.is_empty() {
            return;
        }
        if let Err(e) = self.annuaire_refresh(&users).await {
            tracing::warn!(error = %e, "annuaire: could not update local entries");
        }
    }

    /// An entry as computed now from `facts` (`expired` from the validity hook).
    fn local_entry(self, f: &LocalFacts, expired: bool) -> EntryRow {
        let user = UserId::parse(&f.user_id).ok();
        let external = user
            .as_deref()
            .is_some_and(|u| self.policy_rules.is_external(u));
        let gone = !f.exists || f.deactivated;
        let hide = hidden(f.hide_profile.as_deref());
        // The server notices user is not a person to find.
        let system = user.is_some() && user == self.rooms().server_notices_user_id();
        let visible = !gone && !external && !hide && !expired && !system;
        // A hidden or expired user keeps only what the email mapping needs; an external keeps
        // its profile (it is not in the annuaire, but peers know where its address lives).
        let profile = !gone && !hide && !expired;
        EntryRow {
            user_id: f.user_id.clone(),
            server: self.server_name.to_string(),
            display_name: f.displayname.clone().filter(|_| profile),
            avatar_url: f.avatar_url.clone().filter(|_| profile),
            emails: if gone { vec![] } else { f.emails.clone() },
            external,
            visible,
            position: None,
        }
    }

    /// Recomputes local entries; writes those that changed with new positions, updates the
    /// index and schedules a push. Returns how many changed.
    pub(in crate::services::policy) async fn annuaire_refresh(
        self,
        users: &[String],
    ) -> Result<usize> {
        let _guard = self.annuaire.write.lock().await;
        // On a cluster the nodes write local entries one at a time too (the same lock as a
        // room's, on a name no room has): positions are committed in order.
        let cluster_lock = self.cluster.lock_room(ANNUAIRE_LOCK).await?;
        let res = self.annuaire_refresh_locked(users).await;
        if let Some(l) = cluster_lock {
            crate::store::cluster::RoomLocks::unlock(ANNUAIRE_LOCK, l).await;
        }
        let changed = res?;
        if !changed.is_empty() {
            self.tell_annuaire_change(&changed, true).await;
        }
        Ok(changed.len())
    }

    /// The body of [`Self::annuaire_refresh`], under the locks: the user ids that changed.
    async fn annuaire_refresh_locked(self, users: &[String]) -> Result<Vec<String>> {
        let facts = self.db.annuaire_local_facts(users).await?;
        let old: std::collections::HashMap<String, EntryRow> = self
            .db
            .annuaire_entries_of(users)
            .await?
            .into_iter()
            .map(|e| (e.user_id.clone(), e))
            .collect();
        let living: Vec<String> = facts
            .iter()
            .filter(|f| f.exists && !f.deactivated)
            .map(|f| f.user_id.clone())
            .collect();
        let expired_users = self.accounts_expired(&living).await?;
        let mut changed = vec![];
        for f in &facts {
            let expired = expired_users.contains(&f.user_id);
            let entry = self.local_entry(f, expired);
            if old.get(&f.user_id).is_some_and(|o| o.same_content(&entry)) {
                continue;
            }
            changed.push(entry);
        }
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let mut pos = if self.cluster.shared() {
            self.db.annuaire_max_position().await?
        } else {
            self.annuaire.position.load(Ordering::SeqCst)
        };
        for e in &mut changed {
            pos += 1;
            e.position = Some(pos);
        }
        self.db.annuaire_write(&changed, util::now_ms()).await?;
        self.annuaire.position.fetch_max(pos, Ordering::SeqCst);
        self.index_entries(&changed);
        if self
            .cluster
            .holds(crate::services::cluster::Singleton::Annuaire)
        {
            let _ = self.annuaire.push_tx.send(());
        }
        Ok(changed.into_iter().map(|e| e.user_id).collect())
    }

    /// The other nodes of a cluster index these entries again (`local`: changes of this
    /// server's users, which the annuaire's node announces to the peers).
    pub(in crate::services::policy) async fn tell_annuaire_change(
        self,
        users: &[String],
        local: bool,
    ) {
        if !self.cluster.shared() {
            return;
        }
        let notices = users
            .chunks(100)
            .map(|c| json!({"t": "ann", "u": c, "l": local, "n": self.cluster.slot()}).to_string())
            .collect();
        self.tell_cluster(notices).await;
    }

    /// Another node changed these entries: index them again from the table; the annuaire's
    /// node announces local changes to the peers.
    pub async fn annuaire_changed_elsewhere(self, users: &[String], local: bool) {
        if !self.policy_rules.enabled() || users.is_empty() {
            return;
        }
        let _guard = self.annuaire.write.lock().await;
        match self.db.annuaire_entries_of(users).await {
            Ok(entries) => {
                if let Some(max) = entries.iter().filter_map(|e| e.position).max() {
                    if local {
                        self.annuaire.position.fetch_max(max, Ordering::SeqCst);
                    }
                }
                self.index_entries(&entries);
            }
            Err(e) => tracing::warn!(error = %e, "annuaire: cannot read entries changed elsewhere"),
        }
        if local
            && self
                .cluster
                .holds(crate::services::cluster::Singleton::Annuaire)
        {
            let _ = self.annuaire.push_tx.send(());
        }
    }

    /// Puts entries into the search index (visible ones) or takes them out.
    fn index_entries(self, entries: &[EntryRow]) {
        let mut ix = self.annuaire.index.write();
        for e in entries {
            if e.visible {
                ix.upsert(
                    &e.user_id,
                    e.display_name.as_deref(),
                    e.avatar_url.as_deref(),
                    &e.emails,
                );
            } else {
                ix.remove(&e.user_id);
            }
        }
    }

    /// At start (Tchap on): every local user gets an entry (users that existed before the
    /// annuaire, in batches), then the search index is built from the table.
    pub async fn annuaire_start(self) -> Result<()> {
        if !self.policy_rules.enabled() {
            return Ok(());
        }
        self.annuaire
            .position
            .store(self.db.annuaire_max_position().await?, Ordering::SeqCst);
        loop {
            let users = self.db.users_without_annuaire_entry(BACKFILL_BATCH).await?;
            if users.is_empty() {
                break;
            }
            self.annuaire_refresh(&users).await?;
        }
        self.annuaire_load_index().await?;
        Ok(())
    }

    /// Fills the search index from the table, a page at a time, while the server serves (20 s
    /// at a million entries must not delay the start). Each page is read and indexed under the
    /// local write lock, so a local change is either in the page or applied after it; pulls
    /// from peers start only once the index is built (`start_annuaire_tasks`).
    pub(in crate::services::policy) async fn annuaire_load_index(self) -> Result<()> {
        let start = std::time::Instant::now();
        let mut after = String::new();
        loop {
            let _guard = self.annuaire.write.lock().await;
            let page = self.db.annuaire_visible_page(&after, LOAD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.user_id.clone();
            let mut ix = self.annuaire.index.write();
            for e in &page {
                ix.upsert(
                    &e.user_id,
                    e.display_name.as_deref(),
                    e.avatar_url.as_deref(),
                    &e.emails,
                );
            }
        }
        let ix = self.annuaire.index.read();
        tracing::info!(
            users = ix.len(),
            terms = ix.term_count(),
            approx_mib = ix.approx_bytes() / (1024 * 1024),
            ms = start.elapsed().as_millis() as u64,
            "annuaire index built"
        );
        Ok(())
    }

    /// The account an address is bound to: a local binding first, then the annuaire (an
    /// account of another server of the federation).
    pub async fn account_for_email(self, address: &str) -> Result<Option<OwnedUserId>> {
        let address = email::normalise(address);
        let owner = match self.db.threepid_owner("email", &address).await? {
            Some(u) => Some(u),
            None => self.db.annuaire_email_owner(&address).await?,
        };
        Ok(owner.and_then(|u| UserId::parse(u).ok()))
    }

    fn checked_address(address: &str) -> Result<String> {
        if !email::is_valid(address) {
            return Err(Error::invalid_param("Invalid email address"));
        }
        Ok(email::normalise(address))
    }

    /// `GET /_matrix/identity/api/v1/info`: the server an address belongs to (`hs`), and when
    /// it is already bound to an account elsewhere than the rules say, that account's server
    /// (`hs`) and the rules' (`new_hs`). Without a rule for it: the bound account's server if
    /// any, else `{}` (no server hosts it).
    pub async fn identity_info(self, address: &str) -> Result<Value> {
        let address = Self::checked_address(address)?;
        let home = self.policy_rules.home_for_email(&address);
        let bound = self.account_for_email(&address).await?;
        Ok(match (bound, home) {
            (Some(u), Some(h)) if u.server_name() != h.server => {
                json!({ "hs": u.server_name(), "new_hs": h.server })
            }
            (Some(u), _) => json!({ "hs": u.server_name() }),
            (None, Some(h)) => json!({ "hs": h.server }),
            (None, None) => json!({}),
        })
    }

    /// `GET /_matrix/identity/api/v1/internal-info` (peers only): `{hs, requires_invite,
    /// invited}`. Allowed to a request signed by a peer, or to an unsigned one from the loopback
    /// interface that no proxy forwarded; 403 otherwise.
    pub async fn identity_internal_info(
        self,
        caller: InternalInfoCaller<'_>,
        address: &str,
    ) -> Result<Value> {
        match caller {
            InternalInfoCaller::Signed(origin) => self.annuaire_require_peer(origin)?,
            InternalInfoCaller::Unsigned { loopback, proxied } => {
                if proxied || !loopback {
                    return Err(Error::forbidden(
                        "internal-info is for the servers of the federation",
                    ));
                }
            }
        }
        let address = Self::checked_address(address)?;
        let mut v = self.identity_info(&address).await?;
        let requires_invite = self
            .policy_rules
            .home_for_email(&address)
            .is_some_and(|h| h.requires_invite);
        let invited = !self.db.pending_email_invites(&address).await?.is_empty();
        v["requires_invite"] = json!(requires_invite);
        v["invited"] = json!(invited);
        Ok(v)
    }
}
