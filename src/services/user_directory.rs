//! The user directory (spec: User directory, `POST /user_directory/search`).
//!
//! Who may find whom is decided in ONE place, [`Services::directory_scope`]. The Tchap annuaire
//! (every agent may find every agent; invited outsiders may not search) replaces that function
//! and nothing else: the store turns whichever scope it returns into SQL.
//!
//! Profiles are read from the `users` table at query time (no index table to keep in step), so a
//! display name change is visible to the very next search.

use ruma::UserId;
use serde_json::{json, Value};

use crate::{
    services::Services,
    store::directory::{UserHit, UserScope},
    Error, Result,
};

/// Results per search by default, and at most.
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 50;
/// Longest search term, in bytes.
const MAX_TERM: usize = 256;

impl Services {
    /// Which users `searcher` may find in the user directory. Today (Synapse's default rule):
    /// users who share a joined room with the searcher, and users joined to a public room
    /// (published in the room directory, or whose join rule is `public`). Deactivated users are
    /// never found, whatever the scope.
    pub fn directory_scope<'a>(&self, searcher: &'a UserId) -> UserScope<'a> {
        UserScope::SharedOrPublicRooms {
            searcher: searcher.as_str(),
        }
    }

    /// `POST /user_directory/search`: `{results: [{user_id, display_name, avatar_url}], limited}`.
    pub async fn search_user_directory(
        &self,
        searcher: &UserId,
        term: &str,
        limit: Option<i64>,
    ) -> Result<Value> {
        self.ratelimit
            .check("search", searcher.as_str(), self.config.rate_limits.search)?;
        if term.len() > MAX_TERM {
            return Err(Error::invalid_param(format!(
                "search_term is longer than {MAX_TERM} bytes"
            )));
        }
        let term = term.trim().to_lowercase();
        let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        if term.is_empty() {
            return Ok(json!({ "results": [], "limited": false }));
        }
        let mut hits = self
            .db
            .search_users(self.directory_scope(searcher), &term, limit + 1)
            .await?;
        let limited = hits.len() as i64 > limit;
        hits.truncate(limit as usize);
        let results: Vec<Value> = hits
            .into_iter()
            .map(
                |UserHit {
                     user_id,
                     displayname,
                     avatar_url,
                 }| {
                    let mut v = json!({ "user_id": user_id });
                    if let Some(d) = displayname {
                        v["display_name"] = json!(d);
                    }
                    if let Some(a) = avatar_url {
                        v["avatar_url"] = json!(a);
                    }
                    v
                },
            )
            .collect();
        Ok(json!({ "results": results, "limited": limited }))
    }
}
