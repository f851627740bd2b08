//! Push notifications (spec: Push notifications): the user's push rules (server defaults plus
//! their changes, kept as `m.push_rules` account data), their evaluation when events are stored
//! (evaluate.rs), unread counts and /notifications, and HTTP pushers (pusher.rs).

crate::services::face!(
    /// The face of push: rules, notification counts, pushers.
    PushFace
);

pub mod evaluate;
pub mod pusher;

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use ruma::{
    push::{
        Action, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
        NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
    },
    OwnedRoomId, OwnedUserId, UserId,
};
use serde_json::{json, Value};

use crate::{Error, Result};

/// Rule sets kept in memory; the map is emptied when it grows past this.
const RULESET_CACHE: usize = 20_000;

#[derive(Default)]
pub struct PushState {
    rulesets: Mutex<HashMap<OwnedUserId, Arc<Ruleset>>>,
    /// Wakes the pusher task; users with new notifications wait in `pending`.
    pub wake: Arc<tokio::sync::Notify>,
    pub pending: Mutex<std::collections::HashSet<String>>,
}

/// A push rule change from `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(serde::Deserialize)]
pub struct RuleBody {
    pub actions: Vec<Action>,
    #[serde(default)]
    pub conditions: Option<Vec<PushCondition>>,
    pub pattern: Option<String>,
}

pub fn parse_kind(kind: &str) -> Result<RuleKind> {
    match kind {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(Error::invalid_param("Unknown push rule kind")),
    }
}

/// The rule set as clients expect it: every kind present, even when empty.
pub fn ruleset_json(rules: &Ruleset) -> Result<Value> {
    let mut v = serde_json::to_value(rules)?;
    if let Some(obj) = v.as_object_mut() {
        for kind in ["override", "content", "room", "sender", "underride"] {
            obj.entry(kind).or_insert_with(|| Value::Array(vec![]));
        }
    }
    Ok(v)
}

fn not_found() -> Error {
    Error::not_found("Push rule not found")
}

impl PushFace<'_> {
    /// A user's push rules: the stored ones brought up to date with the server defaults, or the
    /// server defaults.
    pub async fn ruleset(self, user: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(r) = self.push_state.rulesets.lock().get(user) {
            return Ok(r.clone());
        }
        let mut all = self.rulesets(&[user.to_owned()]).await?;
        all.remove(user)
            .ok_or_else(|| Error::unknown("push rules missing"))
    }

    /// The rule sets of several users, reading the uncached ones in one query.
    async fn rulesets(self, users: &[OwnedUserId]) -> Result<HashMap<OwnedUserId, Arc<Ruleset>>> {
        let mut out = HashMap::with_capacity(users.len());
        let mut missing = vec![];
        {
            let cache = self.push_state.rulesets.lock();
            for u in users {
                match cache.get(u) {
                    Some(r) => {
                        out.insert(u.clone(), r.clone());
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
            .global_account_data_of(&missing, "m.push_rules")
            .await?
            .into_iter()
            .collect();
        let mut cache = self.push_state.rulesets.lock();
        if cache.len() + missing.len() > RULESET_CACHE {
            cache.clear();
        }
        for u in missing {
            let Ok(user) = UserId::parse(&u) else {
                continue;
            };
            let defaults = Ruleset::server_default(&user);
            let rules = match stored.get(&u).and_then(|t| {
                serde_json::from_str::<Value>(t)
                    .ok()
                    .and_then(|v| serde_json::from_value::<Ruleset>(v["global"].clone()).ok())
            }) {
                Some(mut r) => {
                    r.update_with_server_default(defaults);
                    r
                }
                None => defaults,
            };
            let rules = Arc::new(rules);
            cache.insert(user.clone(), rules.clone());
            out.insert(user, rules);
        }
        Ok(out)
    }

    /// Drops cached rules: the users' account data changed (on a cluster, maybe on another
    /// node).
    pub fn forget_rulesets(self, users: &[OwnedUserId]) {
        let mut cache = self.push_state.rulesets.lock();
        for u in users {
            cache.remove(u);
        }
    }

    /// Applies a change to a user's rules and stores the result (clients see it in /sync).
    async fn change_rules(
        self,
        user: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<()>,
    ) -> Result<()> {
        let mut rules = (*self.ruleset(user).await?).clone();
        change(&mut rules)?;
        let content = json!({ "global": ruleset_json(&rules)? });
        self.sync()
            .store_account_data(user, None, "m.push_rules", &content)
            .await?;
        self.push_state
            .rulesets
            .lock()
            .insert(user.to_owned(), Arc::new(rules));
        Ok(())
    }

    /// One rule, as JSON, or 404.
    pub async fn push_rule(self, user: &UserId, kind: &str, rule_id: &str) -> Result<Value> {
        parse_kind(kind)?;
        let rules = ruleset_json(&*self.ruleset(user).await?)?;
        rules[kind]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["rule_id"] == rule_id))
            .cloned()
            .ok_or_else(not_found)
    }

    pub async fn put_push_rule(
        self,
        user: &UserId,
        kind: &str,
        rule_id: &str,
        body: RuleBody,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<()> {
        let new = match parse_kind(kind)? {
            RuleKind::Override | RuleKind::Underride => {
                let r = NewConditionalPushRule::new(
                    rule_id.to_owned(),
                    body.conditions.unwrap_or_default(),
                    body.actions,
                );
                if kind == "override" {
                    NewPushRule::Override(r)
                } else {
                    NewPushRule::Underride(r)
                }
            }
            RuleKind::Content => {
                let pattern = body
                    .pattern
                    .ok_or_else(|| Error::bad_json("Content rules need a pattern"))?;
                NewPushRule::Content(NewPatternedPushRule::new(
                    rule_id.to_owned(),
                    pattern,
                    body.actions,
                ))
            }
            RuleKind::Room => {
                let room = OwnedRoomId::try_from(rule_id)
                    .map_err(|_| Error::invalid_param("Room rules are named by a room id"))?;
                NewPushRule::Room(NewSimplePushRule::new(room, body.actions))
            }
            RuleKind::Sender => {
                let sender = OwnedUserId::try_from(rule_id)
                    .map_err(|_| Error::invalid_param("Sender rules are named by a user id"))?;
                NewPushRule::Sender(NewSimplePushRule::new(sender, body.actions))
            }
            _ => return Err(Error::invalid_param("Unknown push rule kind")),
        };
        self.change_rules(user, |rules| {
            rules.insert(new, after, before).map_err(|e| match e {
                InsertPushRuleError::UnknownRuleId => {
                    Error::not_found("The before/after rule does not exist")
                }
                InsertPushRuleError::ServerDefaultRuleId => {
                    Error::invalid_param("Server-default rules cannot be replaced")
                }
                other => Error::invalid_param(other.to_string()),
            })
        })
        .await
    }

    pub async fn delete_push_rule(self, user: &UserId, kind: &str, rule_id: &str) -> Result<()> {
        let kind = parse_kind(kind)?;
        self.change_rules(user, |rules| {
            rules.remove(kind, rule_id).map_err(|e| match e {
                RemovePushRuleError::ServerDefault => {
                    Error::invalid_param("Server-default rules cannot be deleted")
                }
                _ => not_found(),
            })
        })
        .await
    }

    pub async fn set_push_rule_enabled(
        self,
        user: &UserId,
        kind: &str,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        let kind = parse_kind(kind)?;
        self.change_rules(user, |rules| {
            rules
                .set_enabled(kind, rule_id, enabled)
                .map_err(|_| not_found())
        })
        .await
    }

    pub async fn set_push_rule_actions(
        self,
        user: &UserId,
        kind: &str,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let kind = parse_kind(kind)?;
        self.change_rules(user, |rules| {
            rules
                .set_actions(kind, rule_id, actions)
                .map_err(|_| not_found())
        })
        .await
    }

    /// GET /notifications: notifying events, newest first.
    pub async fn notifications(
        self,
        user: &UserId,
        from: Option<&str>,
        limit: i64,
        only_highlight: bool,
    ) -> Result<Value> {
        let before = match from {
            Some(t) => t
                .parse::<i64>()
                .map_err(|_| Error::invalid_param("Invalid from token"))?,
            None => i64::MAX,
        };
        let limit = limit.clamp(1, 100);
        let rows = self
            .db
            .notifications(user.as_str(), before, only_highlight, limit)
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.stream_ordering.to_string()))
            .flatten();
        let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let events = self.db.get_events(&ids).await?;
        let events = self.rooms().filter_visible(user, events).await?;
        let formatted = self
            .rooms()
            .format_events(&events, None, super::rooms::client_event::Format::Client)
            .await?;
        let by_id: HashMap<&str, &Value> = events
            .iter()
            .map(|e| e.event_id.as_str())
            .zip(formatted.iter())
            .collect();
        let notifications: Vec<Value> = rows
            .iter()
            .filter_map(|r| {
                let event = by_id.get(r.event_id.as_str())?;
                Some(json!({
                    "actions": serde_json::from_str::<Value>(&r.actions).unwrap_or_else(|_| json!([])),
                    "event": event,
                    "read": r.is_read,
                    "room_id": r.room_id,
                    "ts": r.ts,
                }))
            })
            .collect();
        let mut out = json!({ "notifications": notifications });
        if let Some(n) = next {
            out["next_token"] = json!(n);
        }
        Ok(out)
    }
}
