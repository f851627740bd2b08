//! Room upgrades (`POST /rooms/{id}/upgrade`): a replacement room in the new version carrying
//! the old room's state, then the old room tombstoned and locked down, its local aliases,
//! canonical alias and directory listing moved to the replacement.

use crate::services::rooms::RoomsFace;
use ruma::events::room::member::MembershipState;
use ruma::events::StateEventType;
use ruma::{
    room_version_rules::RoomVersionRules, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

use super::{
    create::{CreateRoomRequest, Replacement},
    version, EventSpec, RoomCache, RoomState,
};
use crate::{services::policy::access_rules, Error, Result};

/// State (empty state key) copied to the replacement room.
const COPIED: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    access_rules::EVENT_TYPE,
];

/// A room marked as being upgraded, unmarked when dropped.
struct Upgrading<'a> {
    cache: &'a RoomCache,
    room: OwnedRoomId,
}

impl Drop for Upgrading<'_> {
    fn drop(&mut self) {
        self.cache.upgrading.lock().remove(&self.room);
    }
}

impl RoomCache {
    fn begin_upgrade(&self, room: &RoomId) -> Result<Upgrading<'_>> {
        if !self.upgrading.lock().insert(room.to_owned()) {
            return Err(Error::bad_request(
                "An upgrade of this room is already in progress",
            ));
        }
        Ok(Upgrading {
            cache: self,
            room: room.to_owned(),
        })
    }
}

/// The content of a state event of the room, if set.
fn content(room: &RoomState, kind: StateEventType, key: &str) -> Option<Value> {
    room.get(kind, key)
        .and_then(|p| serde_json::from_str(p.content.get()).ok())
}

/// Splits a canonical alias content into what moves to the new room (the aliases of this
/// server) and what stays in the old one; None where nothing is left to send.
fn split_canonical_alias(c: &Value, server: &str) -> (Option<Value>, Option<Value>) {
    let local = |a: &str| {
        RoomAliasId::parse(a)
            .map(|a| a.server_name().as_str() == server)
            .unwrap_or(false)
    };
    let mut moved = Map::new();
    let mut kept = c.as_object().cloned().unwrap_or_default();
    if let Some(a) = c["alias"].as_str().filter(|a| local(a)) {
        moved.insert("alias".into(), json!(a));
        kept.remove("alias");
    }
    if let Some(alts) = c["alt_aliases"].as_array() {
        let (mine, theirs): (Vec<&Value>, Vec<&Value>) =
            alts.iter().partition(|a| a.as_str().is_some_and(&local));
        if !mine.is_empty() {
            moved.insert("alt_aliases".into(), json!(mine));
            if theirs.is_empty() {
                kept.remove("alt_aliases");
            } else {
                kept.insert("alt_aliases".into(), json!(theirs));
            }
        }
    }
    if moved.is_empty() {
        return (None, None);
    }
    (Some(Value::Object(moved)), Some(Value::Object(kept)))
}

/// The power levels the replacement room starts with and, when they differ, the ones it ends
/// with: the old room's, with the upgrading user raised enough to copy every state event (not
/// needed when they are a creator of a version that privileges creators).
fn replacement_power_levels(
    old: &RoomState,
    user: &UserId,
    new_rules: &RoomVersionRules,
) -> (Value, Option<Value>) {
    let mut base = old.power_levels();
    if !base.is_object() {
        // No power levels: the creator has 100 and state needs 0.
        let creator = old
            .get(StateEventType::RoomCreate, "")
            .map(|c| c.sender.to_string());
        base = json!({ "users": {}, "state_default": 0 });
        if let Some(c) = creator {
            base["users"][c] = json!(100);
        }
    }
    if !base["users"].is_object() {
        base["users"] = json!({});
    }
    let (old_priv, new_priv) = (
        old.rules.authorization.explicitly_privilege_room_creators,
        new_rules.authorization.explicitly_privilege_room_creators,
    );
    if old_priv && !new_priv {
        // Creators' unlimited power becomes the usual admin level.
        for c in old.creators() {
            let level = base["users"][c.as_str()].as_i64().unwrap_or(0).max(100);
            base["users"][c.as_str()] = json!(level);
        }
    }
    if new_priv {
        return (base, None);
    }
    let int = |v: &Value, default: i64| v.as_i64().unwrap_or(default);
    let max_event = base["events"]
        .as_object()
        .map(|e| e.values().filter_map(Value::as_i64).max().unwrap_or(0))
        .unwrap_or(0);
    let needed = int(&base["state_default"], 50)
        .max(int(&base["ban"], 50))
        .max(max_event);
    let current = base["users"][user.as_str()]
        .as_i64()
        .unwrap_or_else(|| int(&base["users_default"], 0));
    if current >= needed {
        return (base, None);
    }
    let mut raised = base.clone();
    raised["users"][user.as_str()] = json!(needed);
    (raised, Some(base))
}

/// The old room's power levels with sending and inviting raised to moderators (at least 50,
/// above the default level), None when they already are.
fn restricted_power_levels(pl: &Value) -> Option<Value> {
    if !pl.is_object() {
        return None;
    }
    let level = (pl["users_default"].as_i64().unwrap_or(0) + 1).max(50);
    let mut out = pl.clone();
    let mut changed = false;
    for key in ["events_default", "invite"] {
        if pl[key].as_i64().unwrap_or(0) < level {
            out[key] = json!(level);
            changed = true;
        }
    }
    changed.then_some(out)
}

impl RoomsFace<'_> {
    /// Upgrades a room to `new_version`; returns the replacement room. The work runs in its own
    /// task: a client hanging up cannot leave a replacement without its tombstone.
    pub async fn upgrade_room(
        self,
        user: &UserId,
        room_id: &RoomId,
        new_version: &str,
        additional_creators: &[String],
    ) -> Result<OwnedRoomId> {
        let (version, rules) = version::parse(new_version).ok_or_else(|| {
            Error::unsupported_room_version(format!("Room version {new_version} is not supported"))
        })?;
        self.ratelimit
            .check("upgrade", user.as_str(), self.config.rate_limits.message)?;
        let mut extra: Vec<OwnedUserId> = vec![];
        for u in additional_creators {
            let u = crate::util::parse_user_id(u)?;
            if u != user && !extra.contains(&u) {
                extra.push(u);
            }
        }
        if !extra.is_empty() && !rules.authorization.additional_room_creators {
            return Err(Error::invalid_param(format!(
                "Room version {new_version} has no additional creators"
            )));
        }
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let (user, room_id) = (user.to_owned(), room_id.to_owned());
        tokio::spawn(async move {
            me.rooms()
                .upgrade_inner(&user, &room_id, version, rules, extra)
                .await
        })
        .await
        .map_err(|e| Error::unknown(e.to_string()))?
    }

    async fn upgrade_inner(
        self,
        user: &UserId,
        old_id: &RoomId,
        version: RoomVersionId,
        rules: RoomVersionRules,
        additional_creators: Vec<OwnedUserId>,
    ) -> Result<OwnedRoomId> {
        let _upgrading = self.room_cache.begin_upgrade(old_id)?;

        // 1. What the replacement takes from the old room, read under the old room's lock.
        let (creation, replacement) = {
            let guard = self.lock_room(old_id).await?;
            let old = guard
                .as_ref()
                .ok_or_else(|| Error::not_found("Unknown room"))?;
            if old.membership(user) != Some(MembershipState::Join) {
                return Err(Error::forbidden("You are not in this room"));
            }
            if old.user_power(user) < old.state_power("m.room.tombstone") {
                return Err(Error::forbidden(
                    "You do not have the power to upgrade this room",
                ));
            }
            self.replacement_of(old, old_id, user, &rules, &additional_creators)?
        };

        // 2. The replacement room.
        let req = CreateRoomRequest {
            room_version: Some(version.to_string()),
            creation_content: Some(creation),
            preset: Some("private_chat".into()),
            ..Default::default()
        };
        let new_id = self.create_room_with(user, req, Some(replacement)).await?;

        // 3. The old room: tombstone, then (best effort) its canonical alias without the moved
        // aliases and its power levels restricted; one batch.
        self.retire_old_room(user, old_id, &new_id).await?;

        // 4. Aliases and the directory listing follow.
        self.db
            .transfer_listing(old_id.as_str(), new_id.as_str())
            .await?;
        Ok(new_id)
    }

    /// Step 1 of an upgrade, under the old room's lock: the replacement's creation content and
    /// what it takes from the old room (state, bans, space children, moved aliases, power levels).
    fn replacement_of(
        self,
        old: &RoomState,
        old_id: &RoomId,
        user: &UserId,
        rules: &RoomVersionRules,
        additional_creators: &[OwnedUserId],
    ) -> Result<(Map<String, Value>, Replacement)> {
        self.policy()
            .check_upgrade_creators(&old.state, additional_creators)?;
        let create = content(old, StateEventType::RoomCreate, "").unwrap_or_default();
        let mut predecessor = json!({ "room_id": old_id });
        if !rules.authorization.room_create_event_id_as_room_id {
            // The last event known in the old room (room versions before 12).
            if let Some(last) = old.extremities.first() {
                predecessor["event_id"] = json!(last);
            }
        }
        let mut creation = Map::new();
        creation.insert("predecessor".into(), predecessor);
        for key in ["type", "m.federate"] {
            if let Some(v) = create.get(key) {
                creation.insert(key.into(), v.clone());
            }
        }
        if !additional_creators.is_empty() {
            creation.insert("additional_creators".into(), json!(additional_creators));
        }

        let mut state: Vec<(String, String, Value)> = COPIED
            .iter()
            .filter_map(|k| {
                content(old, (*k).into(), "").map(|c| (k.to_string(), String::new(), c))
            })
            .collect();
        // A space keeps its children; bans stay bans.
        let is_space = create["type"] == "m.space";
        let mut keyed: Vec<_> = old.state.iter().collect();
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        for ((kind, key), pdu) in keyed {
            let Ok(c) = serde_json::from_str::<Value>(pdu.content.get()) else {
                continue;
            };
            let wanted = match kind.to_string().as_str() {
                "m.space.child" => is_space && c.as_object().is_some_and(|o| !o.is_empty()),
                "m.room.member" => c["membership"] == "ban",
                _ => false,
            };
            if wanted {
                state.push((kind.to_string(), key.clone(), c));
            }
        }
        if let Some(c) = content(old, StateEventType::RoomCanonicalAlias, "") {
            if let (Some(moved), _) = split_canonical_alias(&c, self.server_name.as_str()) {
                state.push(("m.room.canonical_alias".into(), String::new(), moved));
            }
        }
        let (power_levels, final_power_levels) = replacement_power_levels(old, user, rules);
        Ok((
            creation,
            Replacement {
                power_levels,
                state,
                final_power_levels,
            },
        ))
    }

    /// Step 3 of an upgrade: the old room's tombstone, then (best effort) its canonical alias
    /// without the moved aliases and its power levels restricted; one batch.
    async fn retire_old_room(self, user: &UserId, old_id: &RoomId, new_id: &RoomId) -> Result<()> {
        let mut guard = self.lock_room(old_id).await?;
        let old = guard
            .as_mut()
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let tombstone = json!({
            "body": "This room has been replaced",
            "replacement_room": new_id,
        });
        let mut batch = vec![old.build(
            self.s,
            user,
            EventSpec::state(StateEventType::RoomTombstone, "", tombstone),
            None,
            None,
        )?];
        let mut extra = vec![];
        if let Some(c) = content(old, StateEventType::RoomCanonicalAlias, "") {
            if let (_, Some(kept)) = split_canonical_alias(&c, self.server_name.as_str()) {
                extra.push((StateEventType::RoomCanonicalAlias, kept));
            }
        }
        if let Some(pl) = restricted_power_levels(&old.power_levels()) {
            extra.push((StateEventType::RoomPowerLevels, pl));
        }
        for (kind, c) in extra {
            match old.build(
                self.s,
                user,
                EventSpec::state(kind.clone(), "", c),
                None,
                None,
            ) {
                Ok(n) => batch.push(n),
                Err(e) => tracing::warn!(room = %old_id, %kind, error = %e,
                    "old room not updated after its upgrade"),
            }
        }
        self.persist(&mut guard, batch, None).await?;
        Ok(())
    }
}
