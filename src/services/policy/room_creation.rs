//! The Tchap steps of room creation and upgrade, at the points `rooms/create.rs` and
//! `rooms/upgrade.rs` name: the access rule a new room gets, its creators, power levels,
//! history visibility and encryption (the defaults themselves are `room_defaults.rs`, the
//! rules `access_rules.rs`).

use serde_json::{json, Map, Value};

use super::room_defaults::*;
use crate::services::policy::access_rules::{self, Rule};

/// Tchap's part of `/createRoom` (TCHAP.md §3, §4), at the points `create_room_with` names.
/// Each takes the room's access rule: `None` (policy off, or a replacement room) leaves the
/// spec's behaviour alone.
impl crate::services::policy::PolicyFace<'_> {
    /// The room's access rule and what the creator may create; `None` when the policy is off or
    /// the room replaces another (an upgrade).
    pub async fn creation_access_rule(
        self,
        creator: &ruma::UserId,
        req: &crate::services::rooms::requests::CreateRoomRequest,
        invitees: &[ruma::OwnedUserId],
        replacing: bool,
    ) -> crate::Result<Option<Rule>> {
        if self.policy_rules.enabled() && !replacing {
            Ok(Some(
                self.tchap_create_checks(creator, req, invitees).await?,
            ))
        } else {
            Ok(None)
        }
    }

    /// Externals are additional creators of direct rooms only (the rule event would refuse it
    /// too; refused before anything is built).
    pub fn check_creation_creators(
        self,
        rule: Option<Rule>,
        create: &Map<String, Value>,
    ) -> crate::Result<()> {
        if let Some(rule) = rule {
            let extra = create.get("additional_creators").and_then(Value::as_array);
            let names = extra.into_iter().flatten().filter_map(Value::as_str);
            access_rules::check_creators(&self.policy_rules, rule, names)
                .map_err(crate::Error::forbidden)?;
        }
        Ok(())
    }

    /// Tchap's power levels of a new room, in place of the preset's.
    pub fn creation_power_levels(
        self,
        rule: Option<Rule>,
        users: &Map<String, Value>,
    ) -> Option<Value> {
        rule.map(|_| power_levels(users.clone()))
    }

    /// The floor under `power_level_content_override`.
    pub fn check_creation_override(self, rule: Option<Rule>, pl: &Value) -> crate::Result<()> {
        if rule.is_some() {
            check_override(pl).map_err(crate::Error::forbidden)?;
        }
        Ok(())
    }

    /// The access rule event, sent right after the power levels.
    pub fn creation_rule_event(
        self,
        rule: Option<Rule>,
    ) -> Option<crate::services::rooms::EventSpec> {
        rule.map(|rule| {
            crate::services::rooms::EventSpec::state(
                access_rules::EVENT_TYPE.into(),
                "",
                json!({ "rule": rule.as_str() }),
            )
        })
    }

    /// Whether an `initial_state` event is the access rule (already sent).
    pub fn is_creation_rule_event(self, rule: Option<Rule>, kind: &str, state_key: &str) -> bool {
        rule.is_some() && kind == access_rules::EVENT_TYPE && state_key.is_empty()
    }

    /// History visibility of the new room, given the join rule it ends up with.
    pub fn creation_history_visibility(
        self,
        rule: Option<Rule>,
        final_join_rule: &str,
    ) -> Option<&'static str> {
        rule.map(|_| history_visibility(final_join_rule == "public"))
    }

    /// Encryption by default: private rooms and DMs are encrypted, forums never.
    pub fn creation_encryption(self, rule: Option<Rule>, final_join_rule: &str) -> Option<bool> {
        rule.map(|_| final_join_rule != "public")
    }
}
