//! Sending events: messages, state, redactions.

use crate::services::rooms::RoomsFace;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{json, Value};

use super::EventSpec;
use crate::{services::requester::Requester, Error, Result};

/// A transaction id with its scope: the spec scopes it to the device and the request path, so
/// the same id in another room or on another endpoint is a different transaction.
fn scoped(endpoint: &str, room_id: &RoomId, txn: &str) -> String {
    format!("{endpoint}|{room_id}|{txn}")
}

impl RoomsFace<'_> {
    /// The event an earlier request of this transaction created, if any.
    async fn earlier_txn(self, r: &Requester, key: Option<&str>) -> Result<Option<OwnedEventId>> {
        let Some(key) = key else { return Ok(None) };
        match self
            .db
            .txn_event(r.user_id.as_str(), &r.device_id, key)
            .await?
        {
            Some(id) => Ok(Some(
                OwnedEventId::try_from(id).map_err(|e| Error::unknown(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// `PUT /rooms/{id}/send/{type}/{txn}` and `PUT /rooms/{id}/state/{type}/{key}`.
    pub async fn send_event(
        self,
        r: &Requester,
        room_id: &RoomId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<&str>,
    ) -> Result<OwnedEventId> {
        let key = txn.map(|t| scoped("send", room_id, t));
        if let Some(id) = self.earlier_txn(r, key.as_deref()).await? {
            return Ok(id);
        }
        if kind != "m.room.redaction" {
            self.admin().check_not_suspended(&r.user_id)?;
        }
        if self.admin().is_shadow_banned(&r.user_id) && kind != "m.room.member" {
            // Answered as sent, sent nowhere (Synapse's shadow ban).
            return Ok(self.admin().phantom_event_id());
        }
        if !content.is_object() {
            return Err(Error::bad_json("Content must be a JSON object"));
        }
        if kind == "m.room.create" {
            return Err(Error::forbidden("Cannot send m.room.create"));
        }
        if kind == "m.room.redaction" {
            if state_key.is_some() {
                return Err(Error::bad_json("m.room.redaction is not a state event"));
            }
            // Redactions go through /redact, which checks who may redact what.
            let target = content
                .get("redacts")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad_json("Missing redacts"))?;
            let target =
                OwnedEventId::try_from(target).map_err(|_| Error::bad_json("Invalid redacts"))?;
            let reason = content.get("reason").and_then(Value::as_str);
            return self
                .redact_scoped(r, room_id, &target, reason, txn.zip(key))
                .await;
        }
        self.ratelimit.check(
            "message",
            r.user_id.as_str(),
            self.admin().message_limit(&r.user_id),
        )?;
        if kind == "m.room.member" {
            if let Some(k) = state_key {
                if UserId::parse(k).is_err() {
                    return Err(Error::bad_json("m.room.member state_key must be a user id"));
                }
            }
        }
        self.check_relation_room(room_id, &content).await?;
        let access_rules = kind == crate::services::policy::access_rules::EVENT_TYPE;
        // Only state events go through the access rules: read the admin flag for those alone.
        let admin = (access_rules || (self.policy_rules.enabled() && state_key.is_some()))
            && self.accounts().is_admin(&r.user_id).await?;
        if access_rules && !admin {
            self.policy()
                .policy_rule_change_allowed(room_id, &content)
                .await?;
        }
        let spec = EventSpec {
            kind: kind.to_owned(),
            state_key: state_key.map(str::to_owned),
            content,
            redacts: None,
            bypass_policy: admin,
        };
        let device = txn.map(|_| r.device_id.clone());
        let txn = txn.map(str::to_owned).zip(key);
        self.submit(room_id, r.user_id.clone(), device, txn, spec, None)
            .await?
            .ok_or_else(|| Error::unknown("No event was sent"))
    }

    /// `PUT /rooms/{id}/redact/{event}/{txn}`: the sender of the original, or someone with the
    /// `redact` power, may redact.
    pub async fn redact(
        self,
        r: &Requester,
        room_id: &RoomId,
        target: &OwnedEventId,
        reason: Option<&str>,
        txn: Option<&str>,
    ) -> Result<OwnedEventId> {
        let key = txn.map(|t| scoped("redact", room_id, t));
        if let Some(id) = self.earlier_txn(r, key.as_deref()).await? {
            return Ok(id);
        }
        if self.admin().is_shadow_banned(&r.user_id) {
            return Ok(self.admin().phantom_event_id());
        }
        self.redact_scoped(r, room_id, target, reason, txn.zip(key))
            .await
    }

    pub(crate) async fn redact_scoped(
        self,
        r: &Requester,
        room_id: &RoomId,
        target: &OwnedEventId,
        reason: Option<&str>,
        txn: Option<(&str, String)>,
    ) -> Result<OwnedEventId> {
        let original = self.db.get_event(target.as_str()).await?;
        if original
            .as_ref()
            .is_some_and(|o| o.room_id != room_id.as_str())
        {
            return Err(Error::not_found("Event not found in this room"));
        }
        let rules = self
            .room_rules(room_id.as_str())
            .await
            .map_err(|_| Error::forbidden("You are not in this room"))?;
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let in_content = rules.redaction.content_field_redacts;
        if in_content {
            content["redacts"] = json!(target);
        }
        let spec = EventSpec {
            kind: "m.room.redaction".into(),
            state_key: None,
            content,
            redacts: (!in_content).then(|| target.clone()),
            bypass_policy: false,
        };
        let (user, original_sender) = (r.user_id.clone(), original.map(|o| o.sender));
        let check: super::writer::Check = Box::new(move |room| {
            let own = original_sender.as_deref() == Some(user.as_str());
            if !own && room.user_power(&user) < room.action_power("redact") {
                return Err(Error::forbidden("You cannot redact other users' events"));
            }
            Ok(true)
        });
        let device = txn.as_ref().map(|_| r.device_id.clone());
        let txn = txn.map(|(t, k)| (t.to_owned(), k));
        self.submit(room_id, r.user_id.clone(), device, txn, spec, Some(check))
            .await?
            .ok_or_else(|| Error::unknown("No event was sent"))
    }
}
