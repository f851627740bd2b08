//! Push rule evaluation when events are stored: each local member's rules (ruma's evaluator)
//! decide whether a new event notifies or highlights them. The result is written with the
//! event, in the same transaction, so unread counts never lag the timeline.

use crate::services::push::PushFace;
use ruma::events::room::member::MembershipState;
use std::collections::{BTreeMap, HashSet};

use ruma::{
    events::{StateEventType, TimelineEventType},
    power_levels::NotificationPowerLevels,
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    room_version_rules::RoomPowerLevelsRules,
    serde::Raw,
    Int, OwnedUserId, UInt, UserId,
};
use serde_json::{value::RawValue, Value};

use crate::{
    services::{
        rooms::thread_of,
        rooms::{NewPdu, RoomState},
    },
    Result,
};

/// One user's notification for one new event.
pub struct PushAction {
    pub user_id: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub thread_id: String,
    pub highlight: bool,
    pub actions: String,
}

fn power_levels_ctx(room: &RoomState) -> PushConditionPowerLevelsCtx {
    let pl = room.power_levels();
    let users: BTreeMap<OwnedUserId, Int> = pl
        .get("users")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        UserId::parse(k).ok()?,
                        Int::new_saturating(v.as_i64().unwrap_or(0)),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let users_default =
        Int::new_saturating(pl.get("users_default").and_then(Value::as_i64).unwrap_or(0));
    let notifications = pl
        .get("notifications")
        .and_then(|n| serde_json::from_value::<NotificationPowerLevels>(n.clone()).ok())
        .unwrap_or_default();
    let rules = RoomPowerLevelsRules::new(&room.rules.authorization, room.creators());
    PushConditionPowerLevelsCtx::new(users, users_default, notifications, rules)
}

impl PushFace<'_> {
    /// The notifications a batch of new events gives the room's local members. `contents` are
    /// the events' parsed contents, in batch order.
    pub async fn evaluate_push(
        self,
        room: &RoomState,
        batch: &[NewPdu],
        streams: &[i64],
        contents: &[Value],
    ) -> Result<Vec<PushAction>> {
        let joined: Vec<OwnedUserId> = room
            .local_members
            .iter()
            .filter(|u| room.membership(u) == Some(MembershipState::Join))
            .cloned()
            .collect();
        // Local users invited by this batch hear about their invite.
        let invited: HashSet<&str> = batch
            .iter()
            .zip(contents)
            .filter(|(n, c)| {
                n.pdu.kind == TimelineEventType::RoomMember && c["membership"] == "invite"
            })
            .filter_map(|(n, _)| n.pdu.state_key.as_deref())
            .filter(|k| UserId::parse(*k).is_ok_and(|u| self.is_local(&u)))
            .collect();
        let mut users = joined.clone();
        users.extend(
            invited
                .iter()
                .filter_map(|k| UserId::parse(*k).ok())
                .filter(|u| !joined.contains(u)),
        );
        if users.is_empty() {
            return Ok(vec![]);
        }
        let rulesets = self.rulesets(&users).await?;
        // Nobody is notified of what a user they ignore sends.
        let ignored = self.sync().ignored_users_of(&users).await?;
        let member_count = room
            .state
            .iter()
            .filter(|((kind, _), pdu)| {
                *kind == StateEventType::RoomMember
                    && pdu.membership() == Some(MembershipState::Join)
            })
            .count();
        let power = power_levels_ctx(room);
        let mut out = vec![];
        for ((n, stream), content) in batch.iter().zip(streams).zip(contents) {
            if n.soft_failed {
                continue;
            }
            let Ok(raw) = RawValue::from_string(n.json.clone()) else {
                continue;
            };
            let raw: Raw<Value> = Raw::from_json(raw);
            let flat = FlattenedJson::from_raw(&raw);
            let is_member_event = n.pdu.kind == TimelineEventType::RoomMember;
            for user in &users {
                if *user == n.pdu.sender
                    || ignored
                        .get(user)
                        .is_some_and(|l| l.contains(n.pdu.sender.as_str()))
                {
                    continue;
                }
                let target = n.pdu.state_key.as_deref() == Some(user.as_str());
                // Invitees only see their own invite.
                if !(joined.contains(user) || is_member_event && target) {
                    continue;
                }
                let Some(rules) = rulesets.get(user) else {
                    continue;
                };
                let display_name = room
                    .get(StateEventType::RoomMember, user.as_str())
                    .and_then(|p| p.content_str("displayname"))
                    .unwrap_or_else(|| user.localpart().to_owned());
                let ctx = PushConditionRoomCtx::new(
                    room.room_id.clone(),
                    UInt::try_from(member_count as u64).unwrap_or(UInt::MAX),
                    user.clone(),
                    display_name,
                )
                .with_power_levels(power.clone());
                let mut actions: &[Action] = &[];
                for rule in rules.iter() {
                    if rule.applies(&flat, &ctx).await {
                        actions = rule.actions();
                        break;
                    }
                }
                if !actions.iter().any(Action::should_notify) {
                    continue;
                }
                out.push(PushAction {
                    user_id: user.to_string(),
                    event_id: n.pdu.event_id.to_string(),
                    stream_ordering: *stream,
                    thread_id: thread_of(content).to_owned(),
                    highlight: actions.iter().any(Action::is_highlight),
                    actions: serde_json::to_string(actions)?,
                });
            }
        }
        Ok(out)
    }
}
