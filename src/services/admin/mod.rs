//! Server administration, behind the admin API (`/_synapse/admin/…`): listings of users and
//! rooms as Synapse shows them, account flags (admin, locked, suspended), reports, room blocks,
//! registration tokens, and the background jobs (room deletion) that survive a restart.
//!
//! The rules stay with their areas: an account is created, deactivated or logged out through
//! `s.accounts()`, a member leaves through `s.rooms()`. This area orders those calls and keeps
//! the admin-only state.

mod destinations;
mod history_purge;
pub mod jobs;
mod limits;
mod media;
mod registration_tokens;
mod reports;
mod room_delete;
mod room_reads;
mod rooms;
mod shared_secret;
mod user_redact;
mod users;

use std::collections::HashSet;

use parking_lot::RwLock;
use ruma::UserId;
use serde_json::Value;

use crate::{services::face, store::admin_users::UserFlag, Error, Result};

pub use destinations::DestinationListParams;
pub use history_purge::PurgeHistory;
pub use limits::RateLimitOverride;
pub use media::{DeleteOldMedia, MediaListParams};
pub use reports::ReportQuery;
pub use room_delete::DeleteRoom;
pub use room_reads::AdminMessages;
pub use rooms::RoomListParams;
pub use shared_secret::SharedSecretRegistration;
pub use user_redact::RedactUser;
pub use users::{UserListParams, UserUpsert};

face!(
    /// Server administration: `s.admin()`.
    AdminFace
);

/// Admin state kept in memory.
#[derive(Default)]
pub struct AdminState {
    /// Suspended local accounts: read on every send, changed by the admin API (loaded at start).
    suspended: RwLock<HashSet<String>>,
    /// Shadow-banned local accounts, read on every send and invite.
    shadow_banned: RwLock<HashSet<String>>,
    /// Per-user message rate limits that replace `[rate_limits] message`.
    message_limits: RwLock<std::collections::HashMap<String, crate::config::RateLimit>>,
}

/// `from`/`limit` of a listing, checked as Synapse does (400 `M_INVALID_PARAM` when negative).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub from: i64,
    pub limit: i64,
}

impl Page {
    /// `limit` defaults to `default` and is capped at 1 000 rows per page.
    pub fn new(from: Option<i64>, limit: Option<i64>, default: i64) -> Result<Self> {
        let from = from.unwrap_or(0);
        let limit = limit.unwrap_or(default);
        if from < 0 {
            return Err(Error::invalid_param(
                "Query parameter from must be a string representing a positive integer.",
            ));
        }
        if limit < 0 {
            return Err(Error::invalid_param(
                "Query parameter limit must be a string representing a positive integer.",
            ));
        }
        Ok(Self {
            from,
            limit: limit.min(1000),
        })
    }

    /// Where the page after this one (of `got` rows out of `total`) starts: none on the last.
    pub fn next(self, got: usize, total: i64) -> Option<i64> {
        let next = self.from + got as i64;
        (got > 0 && next < total).then_some(next)
    }

    /// `next` as the string `next_token` of the user and destination lists.
    pub fn next_token(self, got: usize, total: i64) -> Option<Value> {
        self.next(got, total).map(|n| Value::from(n.to_string()))
    }
}

/// `dir`: `f` (default) or `b`; true when backwards.
pub fn backwards(dir: Option<&str>) -> Result<bool> {
    match dir {
        None | Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(_) => Err(Error::invalid_param("Unknown direction")),
    }
}

impl AdminFace<'_> {
    /// Loads the admin state and resumes the jobs a previous run left unfinished.
    pub async fn start(self) -> Result<()> {
        self.load_state().await?;
        for kind in [
            jobs::SHUTDOWN_ROOM,
            jobs::DELETE_MEDIA,
            jobs::PURGE_REMOTE_MEDIA,
            jobs::PURGE_HISTORY,
            jobs::REDACT_USER,
        ] {
            self.metrics.job_kind(kind);
        }
        self.resume_jobs().await
    }

    /// Reads the accounts' admin flags kept in memory (suspended, shadow-banned, rate-limit
    /// overrides) from the database.
    pub async fn load_state(self) -> Result<()> {
        let suspended = self.db.flagged_users(UserFlag::Suspended).await?;
        *self.admin_state.suspended.write() = suspended.into_iter().collect();
        self.load_limits().await
    }

    /// After a change of those flags: the other nodes of a cluster read them again.
    pub(super) async fn state_changed(self) {
        if self.cluster.shared() {
            let notice = serde_json::json!({"t": "adm", "n": self.cluster.slot()});
            self.tell_cluster(vec![notice.to_string()]).await;
        }
    }

    /// Whether the account is suspended (MSC3823): it may read, leave rooms and redact its own
    /// events, not send, join, invite or create rooms.
    pub fn is_suspended(self, user: &UserId) -> bool {
        let set = self.admin_state.suspended.read();
        !set.is_empty() && set.contains(user.as_str())
    }

    /// Refuses a suspended account's action (403 `M_USER_SUSPENDED`).
    pub fn check_not_suspended(self, user: &UserId) -> Result<()> {
        if self.is_suspended(user) {
            return Err(Error::user_suspended(
                "Your account has been suspended by the server administrator",
            ));
        }
        Ok(())
    }

    /// Only local users can be administered: another server's user is 400 `M_INVALID_PARAM`.
    fn local_user(self, user: &UserId) -> Result<()> {
        if !self.is_local(user) {
            return Err(Error::invalid_param("Can only look up local users"));
        }
        Ok(())
    }
}
