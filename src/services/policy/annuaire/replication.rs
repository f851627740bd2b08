//! Annuaire replication between the federation's Palabre servers: each server serves its local
//! entries as a change stream (`GET …/annuaire/changes?since=&limit=`), pulls every peer's
//! stream periodically and when the peer pushes a notification (`PUT …/annuaire/notify`), and
//! notifies every peer (debounced, fire-and-forget) after its own changes. The pulled position
//! is kept per peer in the database with the entries it covers.

use crate::services::policy::PolicyFace;
use std::{collections::BTreeSet, time::Duration};

use axum::http::Method;
use ruma::{OwnedServerName, ServerName, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{services::policy::email, store::annuaire::EntryRow, util, Error, Result};

/// Entries per page of the change stream, by default and at most.
pub const DEFAULT_PAGE: i64 = 500;
pub const MAX_PAGE: i64 = 1000;
/// Pages pulled from one peer in one round at most (the next round goes on).
const MAX_PAGES_PER_ROUND: usize = 10_000;
/// Local changes are announced this long after the first of a burst.
const PUSH_DEBOUNCE: Duration = Duration::from_secs(1);
/// Bounds on what a peer may send per entry.
const MAX_EMAILS: usize = 32;
const MAX_FIELD: usize = 1024;

const CHANGES_PATH: &str = "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/changes";
const NOTIFY_PATH: &str = "/_matrix/federation/unstable/fr.gouv.tchap/annuaire/notify";

#[derive(Deserialize)]
struct WireEntry {
    user_id: String,
    display_name: Option<String>,
    avatar_url: Option<String>,
    #[serde(default)]
    emails: Vec<String>,
    #[serde(default)]
    external: bool,
    #[serde(default)]
    visible: bool,
}

#[derive(Deserialize)]
struct WirePage {
    entries: Vec<Value>,
    next: i64,
    #[serde(default)]
    more: bool,
}

fn wire(e: &EntryRow) -> Value {
    let mut v = json!({
        "user_id": e.user_id,
        "emails": e.emails,
        "external": e.external,
        "visible": e.visible,
        "position": e.position,
    });
    if let Some(d) = &e.display_name {
        v["display_name"] = json!(d);
    }
    if let Some(a) = &e.avatar_url {
        v["avatar_url"] = json!(a);
    }
    v
}

/// A peer's entry as stored here, or None when it is malformed or not the origin's user.
/// `externals`: the origin is an externals server (by the rules here).
fn accept(origin: &ServerName, externals: bool, raw: Value) -> Option<EntryRow> {
    let w: WireEntry = serde_json::from_value(raw).ok()?;
    let user = UserId::parse(&w.user_id).ok()?;
    if user.server_name() != origin {
        return None;
    }
    let short = |s: Option<String>| s.filter(|s| s.len() <= MAX_FIELD);
    let mut emails: Vec<String> = w
        .emails
        .iter()
        .filter(|a| email::is_valid(a))
        .map(|a| email::normalise(a))
        .collect();
    emails.sort();
    emails.dedup();
    emails.truncate(MAX_EMAILS);
    Some(EntryRow {
        user_id: user.to_string(),
        server: origin.to_string(),
        display_name: short(w.display_name),
        avatar_url: short(w.avatar_url),
        emails,
        external: w.external || externals,
        // A peer's user is an annuaire entry here only if the rules here agree.
        visible: w.visible && !w.external && !externals,
        position: None,
    })
}

impl PolicyFace<'_> {
    /// Refuses a federation request unless its origin is a peer of the federation.
    pub(in crate::services::policy) fn annuaire_require_peer(
        self,
        origin: &ServerName,
    ) -> Result<()> {
        if self.policy_rules.enabled() && self.policy_rules.is_peer(origin) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{origin} is not a peer of this federation"
            )))
        }
    }

    /// `GET …/annuaire/changes`: local entries changed after `since`, in position order
    /// (hidden, expired and deactivated users as `visible: false`), `next` and `more`.
    pub async fn annuaire_changes(
        self,
        origin: &ServerName,
        since: i64,
        limit: Option<i64>,
    ) -> Result<Value> {
        self.annuaire_require_peer(origin)?;
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let rows = self.db.annuaire_changes(since.max(0), limit + 1).await?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next = rows.last().and_then(|e| e.position).unwrap_or(since.max(0));
        Ok(json!({
            "entries": rows.iter().map(wire).collect::<Vec<_>>(),
            "next": next,
            "more": more,
        }))
    }

    /// `PUT …/annuaire/notify`: the origin has changes; pull from it soon (on a cluster, the
    /// node that holds the annuaire's replication does).
    pub fn annuaire_notified(self, origin: &ServerName) -> Result<()> {
        self.annuaire_require_peer(origin)?;
        if self
            .cluster
            .holds(crate::services::cluster::Singleton::Annuaire)
        {
            let _ = self.annuaire.pull_tx.send(origin.to_owned());
        } else {
            let notice = json!({"t": "annpull", "s": origin}).to_string();
            self.tell_cluster_soon(vec![notice]);
        }
        Ok(())
    }

    /// The replication's node is told to pull `peer` (another node received its notify).
    pub fn annuaire_pull_soon(self, peer: OwnedServerName) {
        let _ = self.annuaire.pull_tx.send(peer);
    }

    /// This node has just taken the annuaire's replication over: it pulls every peer and
    /// announces its position.
    pub fn annuaire_took_over(self) {
        if !self.policy_rules.enabled() {
            return;
        }
        for peer in self.policy_rules.peers() {
            let _ = self.annuaire.pull_tx.send(peer.clone());
        }
        let _ = self.annuaire.push_tx.send(());
    }

    /// Pulls a peer's change stream until caught up; returns the entries received.
    pub(in crate::services::policy) async fn annuaire_pull(
        self,
        peer: &ServerName,
    ) -> Result<usize> {
        let mut since = self.db.annuaire_peer_since(peer.as_str()).await?;
        let externals = self.policy_rules.is_external_server(peer);
        let mut total = 0;
        for _ in 0..MAX_PAGES_PER_ROUND {
            let path = format!("{CHANGES_PATH}?since={since}&limit={MAX_PAGE}");
            let answer = self
                .federation()
                .federation_request(peer, Method::GET, &path, None)
                .await?;
            let page: WirePage = serde_json::from_value(answer)
                .map_err(|e| Error::unknown(format!("{peer}: bad annuaire page: {e}")))?;
            if page.next < since {
                return Err(Error::unknown(format!(
                    "{peer}: annuaire position went back"
                )));
            }
            let entries: Vec<EntryRow> = page
                .entries
                .into_iter()
                .filter_map(|raw| accept(peer, externals, raw))
                .collect();
            self.db
                .annuaire_store_pulled(peer.as_str(), &entries, page.next, util::now_ms())
                .await?;
            self.index_entries(&entries);
            let users: Vec<String> = entries.iter().map(|e| e.user_id.clone()).collect();
            self.tell_annuaire_change(&users, false).await;
            total += entries.len();
            let moved = page.next > since;
            since = page.next;
            if !page.more || !moved {
                break;
            }
        }
        Ok(total)
    }

    /// Starts the pull and push tasks (Tchap on). They end when the services are dropped.
    pub fn start_annuaire_tasks(self) {
        if !self.policy_rules.enabled() {
            return;
        }
        let Some(mut rx) = self.annuaire.pull_rx.lock().take() else {
            return;
        };
        let every = Duration::from_secs(
            self.config
                .tchap
                .as_ref()
                .map_or(300, |t| t.annuaire.pull_interval_secs)
                .max(1),
        );
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let mut due: BTreeSet<OwnedServerName> = BTreeSet::new();
                tokio::select! {
                    _ = tick.tick() => {
                        let Some(s) = me.upgrade() else { break };
                        due.extend(s.policy_rules.peers().iter().cloned());
                    }
                    got = rx.recv() => match got {
                        Some(peer) => { due.insert(peer); }
                        None => break,
                    },
                }
                while let Ok(peer) = rx.try_recv() {
                    due.insert(peer);
                }
                let Some(s) = me.upgrade() else { break };
                if !s
                    .cluster
                    .holds(crate::services::cluster::Singleton::Annuaire)
                {
                    continue; // another node of the cluster replicates
                }
                for peer in due {
                    match s.policy().annuaire_pull(&peer).await {
                        Ok(n) if n > 0 => tracing::debug!(%peer, entries = n, "annuaire pulled"),
                        Ok(_) => {}
                        Err(e) => tracing::debug!(%peer, error = %e, "annuaire pull failed"),
                    }
                }
            }
        });
        let Some(mut push_rx) = self.annuaire.push_rx.lock().take() else {
            return;
        };
        let me = self.me.clone();
        tokio::spawn(async move {
            // Ends when the services (and so the sender) are dropped.
            while push_rx.recv().await.is_some() {
                tokio::time::sleep(PUSH_DEBOUNCE).await;
                while push_rx.try_recv().is_ok() {}
                let Some(s) = me.upgrade() else { break };
                if !s
                    .cluster
                    .holds(crate::services::cluster::Singleton::Annuaire)
                {
                    continue;
                }
                let position = s
                    .annuaire
                    .position
                    .load(std::sync::atomic::Ordering::SeqCst);
                for peer in s.policy_rules.peers().to_vec() {
                    let s = s.clone();
                    tokio::spawn(async move {
                        let body = json!({ "position": position });
                        let sent = tokio::time::timeout(
                            Duration::from_secs(10),
                            s.federation().federation_request(
                                &peer,
                                Method::PUT,
                                NOTIFY_PATH,
                                Some(&body),
                            ),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(_))) {
                            tracing::debug!(%peer, "annuaire notify not delivered");
                        }
                    });
                }
            }
        });
    }
}
