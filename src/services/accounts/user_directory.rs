//! The user directory (spec: User directory, `POST /user_directory/search`).
//!
//! Who may find whom is decided in ONE place, [`Services::directory_scope`]. The Tchap annuaire
//! (every agent may find every agent; invited outsiders may not search) replaces that function
//! and nothing else: the store turns whichever scope it returns into SQL.
//!
//! Tchap off: profiles are read from the `users` table at query time (no index table to keep in
//! step), so a display name change is visible to the very next search.
//!
//! Tchap on: agents search the annuaire (the in-memory index of every visible agent of the
//! federation, `policy/annuaire`) and the members of the rooms they are joined to; externals
//! only the latter. Both are matched and ranked the same way (`annuaire::index`).

use crate::services::accounts::AccountsFace;
use ruma::UserId;
use serde_json::{json, Value};

use crate::{
    services::policy::annuaire::index::{self, Rank},
    store::directory::{UserHit, UserScope},
    Error, Result,
};

/// Room co-members read per Tchap search at most.
const MAX_ROOM_MEMBERS: i64 = 20_000;
/// How long a searcher's parsed co-members are reused (clients search as the user types: one
/// read of the member events per burst, not per keystroke).
const MEMBERS_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Searchers whose co-members are kept at most.
const MEMBERS_CACHED: usize = 1024;

/// A room co-member of a searcher, parsed and with its search terms.
struct Member {
    user_id: String,
    displayname: Option<String>,
    avatar_url: Option<String>,
    terms: String,
}

/// A searcher's co-members and when they were read.
type Members = (std::time::Instant, std::sync::Arc<Vec<Member>>);

/// Recent searchers' co-members (Tchap search), for [`MEMBERS_TTL`].
#[derive(Default)]
pub struct MemberCache {
    map: parking_lot::Mutex<std::collections::HashMap<String, Members>>,
}

/// Whom a search may return.
#[derive(Debug, Clone, Copy)]
pub enum DirectoryScope<'a> {
    /// Plain Matrix: the store's scope, turned into SQL.
    Rooms(UserScope<'a>),
    /// Tchap: users sharing a joined room with `searcher`, plus the annuaire when `annuaire`.
    Tchap {
        searcher: &'a UserId,
        annuaire: bool,
    },
}

/// Results per search by default, and at most.
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 50;
/// Longest search term, in bytes.
const MAX_TERM: usize = 256;

impl AccountsFace<'_> {
    /// Which users `searcher` may find in the user directory. Tchap off (Synapse's default
    /// rule): users who share a joined room with the searcher, and users joined to a public room
    /// (published in the room directory, or whose join rule is `public`). Tchap on: agents find
    /// every visible agent of the federation (the annuaire: hidden, expired and deactivated
    /// users are not in it) and the users they share a joined room with; externals only the
    /// users they share a joined room with. Deactivated users are never found, whatever the
    /// scope.
    pub(super) fn directory_scope<'a>(self, searcher: &'a UserId) -> DirectoryScope<'a> {
        match self.policy().annuaire_scope(searcher) {
            None => DirectoryScope::Rooms(UserScope::SharedOrPublicRooms {
                searcher: searcher.as_str(),
            }),
            Some(annuaire) => DirectoryScope::Tchap { searcher, annuaire },
        }
    }

    /// The searcher's room co-members with their search terms: read and parsed once per
    /// [`MEMBERS_TTL`] (a new co-member shows up in searches within that time).
    async fn room_members_for_search(
        self,
        searcher: &UserId,
    ) -> Result<std::sync::Arc<Vec<Member>>> {
        let now = std::time::Instant::now();
        if let Some((at, m)) = self.directory_members.map.lock().get(searcher.as_str()) {
            if now.duration_since(*at) < MEMBERS_TTL {
                return Ok(m.clone());
            }
        }
        let rows = self
            .db
            .shared_room_members(searcher.as_str(), MAX_ROOM_MEMBERS)
            .await?;
        let mut seen = std::collections::HashSet::new();
        let mut members = Vec::with_capacity(rows.len());
        for (user_id, event) in rows {
            if !seen.insert(user_id.clone()) {
                continue;
            }
            let content = serde_json::from_str::<Value>(&event)
                .ok()
                .and_then(|e| e.get("content").cloned())
                .unwrap_or(Value::Null);
            let text = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
            let displayname = text("displayname");
            let terms = index::doc_terms(&user_id, displayname.as_deref(), &[]).join(" ");
            members.push(Member {
                user_id,
                displayname,
                avatar_url: text("avatar_url"),
                terms,
            });
        }
        let members = std::sync::Arc::new(members);
        let mut map = self.directory_members.map.lock();
        if map.len() >= MEMBERS_CACHED {
            map.retain(|_, (at, _)| now.duration_since(*at) < MEMBERS_TTL);
            if map.len() >= MEMBERS_CACHED {
                map.clear();
            }
        }
        map.insert(searcher.as_str().to_owned(), (now, members.clone()));
        Ok(members)
    }

    /// A Tchap search: the annuaire (agents) and the searcher's room co-members, matched and
    /// ranked alike, at most `k`.
    async fn tchap_search(
        self,
        searcher: &UserId,
        annuaire: bool,
        term: &str,
        k: usize,
    ) -> Result<Vec<UserHit>> {
        let words = index::query_words(term);
        if words.is_empty() {
            return Ok(vec![]);
        }
        let members = self.room_members_for_search(searcher).await?;
        let mut hits: Vec<(Rank, UserHit)> = vec![];
        for m in members.iter() {
            if let Some(exact) = index::match_terms(&m.terms, &words) {
                let rank = Rank {
                    inexact: index::MAX_QUERY_WORDS as u8 - exact,
                    term: u32::MAX,
                    slot: u32::MAX,
                };
                hits.push((
                    rank,
                    UserHit {
                        user_id: m.user_id.clone(),
                        displayname: m.displayname.clone(),
                        avatar_url: m.avatar_url.clone(),
                    },
                ));
            }
        }
        if annuaire {
            let ix = self.annuaire.index.read();
            for (rank, doc) in ix.search(&words, k) {
                hits.push((
                    rank,
                    UserHit {
                        user_id: doc.user_id.to_string(),
                        displayname: doc.display_name.as_deref().map(str::to_owned),
                        avatar_url: doc.avatar_url.as_deref().map(str::to_owned),
                    },
                ));
            }
        }
        hits.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.user_id.cmp(&b.user_id)));
        let mut kept = std::collections::HashSet::new();
        Ok(hits
            .into_iter()
            .filter(|(_, h)| kept.insert(h.user_id.clone()))
            .map(|(_, h)| h)
            .take(k)
            .collect())
    }

    /// `POST /user_directory/search`: `{results: [{user_id, display_name, avatar_url}], limited}`.
    pub async fn search_user_directory(
        self,
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
        let mut hits = match self.directory_scope(searcher) {
            DirectoryScope::Rooms(scope) => self.db.search_users(scope, &term, limit + 1).await?,
            DirectoryScope::Tchap { searcher, annuaire } => {
                self.tchap_search(searcher, annuaire, &term, limit as usize + 1)
                    .await?
            }
        };
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
