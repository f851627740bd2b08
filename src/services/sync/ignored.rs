//! Ignored users (spec: "Ignoring Users", `m.ignored_user_list` account data). The events of an
//! ignored user other than state are not sent to the user who ignores them (`/sync`,
//! `/messages`, `/context`, `/event`: the visibility filter drops them), nor are their invites.
//! Each user's list is cached (bounded) and dropped when the account data changes, on every
//! node of a cluster (the account-data notice).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use crate::{services::sync::SyncFace, Result};

/// The account data type.
pub const TYPE: &str = "m.ignored_user_list";
/// Users whose lists are cached at most (past it, the cache starts over).
const MAX_CACHED: usize = 100_000;

#[derive(Default)]
pub struct IgnoredLists(Mutex<HashMap<OwnedUserId, Arc<HashSet<String>>>>);

/// The user ids of an `m.ignored_user_list` content (its `ignored_users` keys that are user
/// ids).
fn parse(content: &str) -> HashSet<String> {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| {
            v["ignored_users"].as_object().map(|o| {
                o.keys()
                    .filter(|k| UserId::parse(k.as_str()).is_ok())
                    .cloned()
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl SyncFace<'_> {
    /// The users `user` ignores.
    pub async fn ignored_users(self, user: &UserId) -> Result<Arc<HashSet<String>>> {
        if let Some(l) = self.ignored.0.lock().get(user) {
            return Ok(l.clone());
        }
        let list = Arc::new(
            self.db
                .get_account_data(user.as_str(), "", TYPE)
                .await?
                .map(|c| parse(&c))
                .unwrap_or_default(),
        );
        let mut cache = self.ignored.0.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user.to_owned(), list.clone());
        Ok(list)
    }

    /// The lists of many users: the cached ones, the others read in one query.
    pub async fn ignored_users_of(
        self,
        users: &[OwnedUserId],
    ) -> Result<HashMap<OwnedUserId, Arc<HashSet<String>>>> {
        let mut out = HashMap::with_capacity(users.len());
        let mut missing = vec![];
        {
            let cache = self.ignored.0.lock();
            for u in users {
                match cache.get(u) {
                    Some(l) => {
                        out.insert(u.clone(), l.clone());
                    }
                    None => missing.push(u.to_string()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let stored: HashMap<String, String> = self
            .db
            .global_account_data_of(&missing, TYPE)
            .await?
            .into_iter()
            .collect();
        let mut cache = self.ignored.0.lock();
        if cache.len() + missing.len() > MAX_CACHED {
            cache.clear();
        }
        for u in missing {
            let Ok(user) = UserId::parse(&u) else {
                continue;
            };
            let list = Arc::new(stored.get(&u).map(|c| parse(c)).unwrap_or_default());
            cache.insert(user.clone(), list.clone());
            out.insert(user, list);
        }
        Ok(out)
    }

    /// Drops cached lists (their account data changed, maybe on another node).
    pub fn forget_ignored(self, users: &[OwnedUserId]) {
        let mut cache = self.ignored.0.lock();
        for u in users {
            cache.remove(u);
        }
    }
}
