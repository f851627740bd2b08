//! Leaving rooms across servers (spec: Leaving Rooms (Rejecting Invites)): `make_leave` v1 /
//! `send_leave` v2 served to other servers, and local users rejecting an invite (or rescinding
//! a knock) in a room this server does not know, through a server that does.

use crate::services::federation::FederationFace;
use ruma::events::room::member::MembershipState;
use ruma::{
    events::TimelineEventType, room_version_rules::RoomVersionRules, CanonicalJsonObject,
    CanonicalJsonValue, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
};
use serde_json::{json, Value};

use super::{client::raw_json, invite::incompatible};
use crate::{
    services::rooms::{int, pdu::Pdu, version, Outcome},
    store::rooms::MembershipRow,
    util, Error, Result,
};
use ruma::api::federation::membership::{create_leave_event, prepare_leave_event};

/// Room versions this server can take part in, as `ver=` parameters.
pub fn supported_versions() -> Vec<ruma::RoomVersionId> {
    version::SUPPORTED
        .iter()
        .filter_map(|v| ruma::RoomVersionId::try_from(*v).ok())
        .collect()
}

/// A resident server's member event template made ours: our content, timestamp, sender and
/// state key, and none of its signatures, hashes, unsigned data or id (we sign it next).
pub(super) fn fill_member_template(
    obj: &mut CanonicalJsonObject,
    user: &UserId,
    content: Value,
) -> Result<()> {
    let c = CanonicalJsonValue::try_from(content).map_err(|e| Error::bad_json(e.to_string()))?;
    obj.insert("content".into(), c);
    obj.insert("origin_server_ts".into(), int(util::now_ms()));
    obj.insert(
        "sender".into(),
        CanonicalJsonValue::String(user.to_string()),
    );
    obj.insert(
        "state_key".into(),
        CanonicalJsonValue::String(user.to_string()),
    );
    for f in ["signatures", "hashes", "unsigned", "event_id"] {
        obj.remove(f);
    }
    Ok(())
}

impl FederationFace<'_> {
    /// `make_join` / `make_leave` / `make_knock`: an unsigned `membership` event template for a user of the
    /// origin on top of our current state, refused now if the auth rules would refuse it later.
    /// `versions` (the `ver` parameters) are checked for joins and knocks.
    pub async fn make_membership(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
        versions: Option<&[String]>,
    ) -> Result<Value> {
        if user.server_name() != origin {
            return Err(Error::forbidden("The user is not on the requesting server"));
        }
        self.check_acl(room_id, origin).await?;
        let guard = self.rooms().lock_room(room_id).await?;
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let ver = room.version.as_str();
        // Without `ver` parameters a server supports room version 1 only (spec).
        if let Some(versions) = versions {
            let accepted = if versions.is_empty() {
                ver == "1"
            } else {
                versions.iter().any(|v| v == ver)
            };
            if !accepted {
                return Err(incompatible(ver));
            }
        }
        if membership == "knock" && !room.rules.authorization.knocking {
            return Err(incompatible(ver));
        }
        let template = room.template(
            user,
            "m.room.member",
            Some(user.as_str()),
            json!({ "membership": membership }),
        )?;
        room.check_template_as(
            &self.policy_rules,
            &template,
            &format!("You may not {membership}"),
        )?;
        Ok(json!({ "event": template, "room_version": ver }))
    }

    /// `send_leave` / `send_knock`: takes a signed `membership` event of a user of the origin
    /// into the room (checked like any PDU: signatures, hashes, auth rules) and passes it on to
    /// the room's other servers.
    pub async fn take_remote_membership(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        event: &Value,
        membership: &str,
    ) -> Result<()> {
        let rules = self.rooms().room_rules(room_id.as_str()).await?;
        self.check_acl(room_id, origin).await?;
        let checked = self.check_pdu(event, &rules).await?;
        if checked.event_id.as_str() != event_id {
            return Err(Error::bad_json("The event id does not match the event"));
        }
        let pdu = Pdu::parse(checked.event_id.as_str(), &checked.json).map_err(Error::bad_json)?;
        if pdu.kind != TimelineEventType::RoomMember
            || pdu.room_id.as_deref() != Some(room_id)
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
            || pdu.content_str("membership").as_deref() != Some(membership)
            || pdu.sender.server_name() != origin
        {
            return Err(Error::bad_json(format!(
                "Not a {membership} of a user of the requesting server"
            )));
        }
        match self
            .rooms()
            .accept_remote_pdus(room_id, vec![checked])
            .await?
            .pop()
            .map(|(_, o)| o)
        {
            Some(Outcome::Accepted) | Some(Outcome::AlreadyKnown) => {}
            Some(Outcome::Rejected(e)) => {
                return Err(Error::forbidden(format!("{membership} refused: {e}")))
            }
            Some(Outcome::SoftFailed) => {
                return Err(Error::forbidden(format!("{membership} refused")))
            }
            Some(Outcome::MissingPrevs(_)) | None => {
                return Err(Error::bad_json(
                    "The event does not follow events known here",
                ))
            }
        }
        let guard = self.rooms().lock_room(room_id).await?;
        if let Some(room) = guard.as_ref() {
            self.send_to_room_servers(room, &[event_id.to_owned()], Some(origin))
                .await?;
        }
        Ok(())
    }

    /// Fills in and signs a `make_*` template answered by another server: our content,
    /// timestamp and signature. Returns the event id, the event and its room version.
    pub(super) fn sign_remote_template(
        self,
        resp: &Value,
        room_id: &RoomId,
        user: &UserId,
        content: Value,
    ) -> Result<(
        OwnedEventId,
        CanonicalJsonObject,
        RoomVersionId,
        RoomVersionRules,
    )> {
        let ver = resp["room_version"].as_str().unwrap_or("1");
        let version = RoomVersionId::try_from(ver).map_err(|_| incompatible(ver))?;
        let rules = version::supported(&version).ok_or_else(|| incompatible(ver))?;
        let mut obj: CanonicalJsonObject = match CanonicalJsonValue::try_from(resp["event"].clone())
        {
            Ok(CanonicalJsonValue::Object(o)) => o,
            _ => return Err(Error::bad_json("Bad event template")),
        };
        let field = |o: &CanonicalJsonObject, k: &str| match o.get(k) {
            Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        if field(&obj, "type").as_deref() != Some("m.room.member")
            || field(&obj, "room_id").as_deref() != Some(room_id.as_str())
        {
            return Err(Error::bad_json("The event template is not for this room"));
        }
        fill_member_template(&mut obj, user, content)?;
        let hash = self.rooms().sign_pdu(&mut obj, &rules)?;
        let event_id = OwnedEventId::try_from(format!("${hash}"))
            .map_err(|e| Error::bad_json(e.to_string()))?;
        Ok((event_id, obj, version, rules))
    }

    /// The servers kept with an out-of-band invite or knock, else the membership event's
    /// sender's server and the room id's.
    pub(crate) async fn out_of_band_servers(
        self,
        room_id: &RoomId,
        membership_event: &str,
    ) -> Result<(Vec<OwnedServerName>, Option<String>)> {
        let kept = self
            .db
            .remote_memberships(&[membership_event.to_owned()])
            .await?
            .pop();
        let mut servers: Vec<OwnedServerName> = vec![];
        let mut version = None;
        if let Some(k) = kept {
            let list: Vec<String> = serde_json::from_str(&k.servers).unwrap_or_default();
            servers.extend(
                list.iter()
                    .filter_map(|s| ServerName::parse(s.as_str()).ok()),
            );
            version = Some(k.room_version);
        }
        if let Some(ev) = self.db.get_event(membership_event).await? {
            if let Ok(u) = UserId::parse(ev.sender.as_str()) {
                servers.push(u.server_name().to_owned());
            }
        }
        servers.extend(room_id.server_name().map(ToOwned::to_owned));
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| *s != self.server_name && seen.insert(s.clone()));
        Ok((servers, version))
    }

    /// Rejects an invite (or rescinds a knock) in a room this server does not know: through
    /// the servers that can help; if none answers, the invite is rejected here only (as Synapse
    /// does), so the user is not stuck with it.
    pub async fn leave_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        current: &MembershipRow,
        reason: Option<&str>,
    ) -> Result<()> {
        let (servers, version) = self.out_of_band_servers(room_id, &current.event_id).await?;
        let mut content = json!({ "membership": MembershipState::Leave });
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        for server in &servers {
            match self.leave_via(server, user, room_id, content.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e.message, "remote leave failed")
                }
            }
        }
        tracing::warn!(%room_id, %user, ?servers, "no server could take the leave: rejected locally only");
        self.local_leave(user, room_id, current, content, version.as_deref())
            .await
    }

    async fn leave_via(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
        content: Value,
    ) -> Result<()> {
        let (event_id, json) = self.send_leave_via(server, user, room_id, content).await?;
        self.store_out_of_band(user, room_id, event_id.as_str(), &json, "leave", None)
            .await
    }

    /// make_leave + send_leave through `server`; the signed leave (id, JSON) is returned, not
    /// stored.
    pub(super) async fn send_leave_via(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
        content: Value,
    ) -> Result<(ruma::OwnedEventId, String)> {
        if !super::allowed(&self.config.federation, server) {
            return Err(Error::forbidden(format!(
                "Federation with {server} is not allowed"
            )));
        }
        let resp = self
            .call(
                server,
                prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned()),
            )
            .await?;
        let (event_id, obj, _, _) = self.sign_remote_template(&resp, room_id, user, content)?;
        let send = create_leave_event::v2::Request::new(
            room_id.to_owned(),
            event_id.clone(),
            raw_json(&obj)?,
        );
        self.call(server, send).await?;
        Ok((event_id, serde_json::to_string(&obj)?))
    }

    /// A leave built here on top of the invite or knock alone (never sent anywhere): the
    /// membership ends on this server when no other server can be reached.
    async fn local_leave(
        self,
        user: &UserId,
        room_id: &RoomId,
        current: &MembershipRow,
        content: Value,
        version: Option<&str>,
    ) -> Result<()> {
        let prev = self
            .db
            .get_event(&current.event_id)
            .await?
            .ok_or_else(|| Error::not_found("You are not in this room"))?;
        let prev_pdu = Pdu::parse(&prev.event_id, &prev.json).map_err(Error::unknown)?;
        let ver = version.unwrap_or("10");
        let (_, rules) = version::parse(ver).ok_or_else(|| incompatible(ver))?;
        let mut obj = CanonicalJsonObject::new();
        let ids =
            || CanonicalJsonValue::Array(vec![CanonicalJsonValue::String(prev.event_id.clone())]);
        obj.insert("auth_events".into(), ids());
        obj.insert("prev_events".into(), ids());
        obj.insert(
            "content".into(),
            CanonicalJsonValue::try_from(content).map_err(|e| Error::bad_json(e.to_string()))?,
        );
        obj.insert("depth".into(), int(prev_pdu.depth as i64 + 1));
        obj.insert("origin_server_ts".into(), int(util::now_ms()));
        obj.insert(
            "room_id".into(),
            CanonicalJsonValue::String(room_id.to_string()),
        );
        for k in ["sender", "state_key"] {
            obj.insert(k.into(), CanonicalJsonValue::String(user.to_string()));
        }
        obj.insert(
            "type".into(),
            CanonicalJsonValue::String("m.room.member".into()),
        );
        let hash = self.rooms().sign_pdu(&mut obj, &rules)?;
        let json = serde_json::to_string(&obj)?;
        self.store_out_of_band(user, room_id, &format!("${hash}"), &json, "leave", None)
            .await
    }
}
