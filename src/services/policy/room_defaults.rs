//! Room defaults (TCHAP.md §4): the power levels and state a new room gets, the floor under
//! `power_level_content_override`, and the forum rules (a public room is not encrypted, and
//! stays public unless encrypted).

use ruma::events::room::member::MembershipState;
use ruma::events::StateEventType;
use serde_json::{json, Map, Value};

use crate::services::rooms::state::State;

/// Lowest `invite` level a creation override may set.
pub const MIN_INVITE: i64 = 50;
/// Lowest `state_default` a creation override may set.
pub const MIN_STATE_DEFAULT: i64 = 100;

/// The power levels of a new room (before `power_level_content_override`).
pub fn power_levels(users: Map<String, Value>) -> Value {
    json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
            "m.call.member": 0,
            "m.beacon_info": 0,
        },
        "events_default": 0,
        "state_default": 100,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "notifications": { "room": 50 },
    })
}

/// Power levels after the creation overrides: `invite` and `state_default` may not go under
/// their floors.
pub fn check_override(pl: &Value) -> Result<(), String> {
    let level = |k: &str, default: i64| pl.get(k).and_then(Value::as_i64).unwrap_or(default);
    if level("invite", 0) < MIN_INVITE {
        return Err(format!("invite cannot be lower than {MIN_INVITE}"));
    }
    if level("state_default", 50) < MIN_STATE_DEFAULT {
        return Err(format!(
            "state_default cannot be lower than {MIN_STATE_DEFAULT}"
        ));
    }
    Ok(())
}

/// History visibility of a new room: `shared` for a forum, `invited` otherwise.
pub fn history_visibility(public: bool) -> &'static str {
    if public {
        "shared"
    } else {
        "invited"
    }
}

fn join_rule(state: &State) -> Option<String> {
    state
        .get(&(StateEventType::RoomJoinRules, String::new()))
        .and_then(|p| p.content_str("join_rule"))
}

/// Forum rules, given the state before an event of type `kind` with `content`: no
/// `m.room.encryption` while the join rule is `public`; leaving `public` only for an encrypted
/// room.
pub fn check_forum(state: &State, kind: &str, content: &Value) -> Result<(), String> {
    let public = join_rule(state).as_deref() == Some("public");
    match kind {
        "m.room.encryption" if public => Err("A public room (forum) cannot be encrypted".into()),
        "m.room.join_rules" if public => {
            let encrypted = state.contains_key(&(StateEventType::RoomEncryption, String::new()));
            if content["join_rule"].as_str() != Some("public") && !encrypted {
                return Err("A public room (forum) can only stop being public if encrypted".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl super::PolicyFace<'_> {
    /// Before a local user leaves a room: when they are its last member with power 100, raises
    /// the highest-powered remaining joined members who are not externals to 100, with a
    /// power-levels event sent as the leaving user (TCHAP.md §4). Nothing when only externals
    /// remain.
    pub async fn policy_promote_before_leave(
        self,
        user: &ruma::UserId,
        room_id: &ruma::RoomId,
    ) -> crate::Result<()> {
        if !self.policy_rules.enabled() {
            return Ok(());
        }
        let pl = {
            let guard = self.rooms().lock_room(room_id).await?;
            let Some(room) = guard.as_ref() else {
                return Ok(());
            };
            promoted_power_levels(&self.policy_rules, room, user)
        };
        let Some(pl) = pl else { return Ok(()) };
        let spec = crate::services::rooms::requests::EventSpec::state(
            StateEventType::RoomPowerLevels,
            "",
            pl,
        );
        self.rooms()
            .submit(room_id, user.to_owned(), None, None, spec, None)
            .await?;
        Ok(())
    }
}

/// The power levels promoting the successors of `leaving`, when they are the last member with
/// power 100 (None: nothing to do).
fn promoted_power_levels(
    policy: &super::Policy,
    room: &crate::services::rooms::state::RoomState,
    leaving: &ruma::UserId,
) -> Option<Value> {
    let mut pl = room.power_levels();
    if pl.is_null() || room.user_power(leaving) < 100 {
        return None;
    }
    let joined: Vec<ruma::OwnedUserId> = room
        .state
        .iter()
        .filter(|((t, _), p)| {
            *t == StateEventType::RoomMember && p.membership() == Some(MembershipState::Join)
        })
        .filter_map(|((_, k), _)| ruma::UserId::parse(k.as_str()).ok())
        .filter(|u| u != leaving)
        .collect();
    if joined.iter().any(|u| room.user_power(u) >= 100) {
        return None;
    }
    let agents: Vec<&ruma::OwnedUserId> =
        joined.iter().filter(|u| !policy.is_external(u)).collect();
    let top = agents.iter().map(|u| room.user_power(u)).max()?;
    if !pl["users"].is_object() {
        pl["users"] = json!({});
    }
    for u in agents.into_iter().filter(|u| room.user_power(u) == top) {
        pl["users"][u.as_str()] = json!(100);
    }
    Some(pl)
}
