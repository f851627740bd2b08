//! Invites across servers (spec: Inviting to a room): `PUT /v2/invite` served for local
//! invitees, and local users inviting users of other servers. An invite into a room this server
//! does not know is kept out of band: the co-signed event as an outlier, the user's membership,
//! and the stripped state the inviting server sent (`remote_memberships`), which /sync shows.

use crate::services::federation::client::raw_json;
use crate::services::federation::FederationFace;
use ruma::api::federation::membership::{create_invite, RawStrippedState};
use ruma::events::room::member::MembershipState;
use ruma::events::StateEventType;
use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    canonical_json::redact,
    events::TimelineEventType,
    room_version_rules::RoomVersionRules,
    signatures::{reference_hash, sign_event, verify_json, PublicKeyMap},
    state_res, CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedServerName, RoomId,
    RoomVersionId, ServerName, UserId,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{pdu::CheckedPdu, sender::outgoing_pdu};
use crate::{
    services::{
        rooms::{
            pdu::Pdu, version, EventWrite, OutOfBand, Outcome, Placement, RoomState, MAX_PDU_BYTES,
        },
        Services,
    },
    store::remote_memberships::NewRemoteMembership,
    Error, Result,
};

/// The state events shown to someone invited or knocking (spec: Stripped state), sent as full
/// PDUs to other servers (v1.16) and as stripped events to clients.
pub const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];
/// At most this many stripped state events are kept from another server.
const MAX_STRIPPED_EVENTS: usize = 50;
/// At most this many bytes of stripped state are kept per invite or knock.
const MAX_STRIPPED_BYTES: usize = 256 * 1024;
/// Servers kept to join or leave through.
const MAX_SERVERS: usize = 10;

/// The body of `PUT /v2/invite`.
#[derive(Deserialize)]
pub struct InviteRequest {
    pub room_version: String,
    pub event: Value,
    #[serde(default)]
    pub invite_room_state: Vec<Value>,
    /// MSC4125: servers to join or leave through.
    #[serde(default)]
    pub via: Vec<String>,
}

/// Room versions answer: 400 M_INCOMPATIBLE_ROOM_VERSION naming the version.
pub fn incompatible(ver: &str) -> Error {
    Error::incompatible_room_version("This server does not support this room's version")
        .with_extra("room_version", json!(ver))
}

fn object(v: &Value) -> Result<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(v.clone()) {
        Ok(CanonicalJsonValue::Object(o)) => Ok(o),
        _ => Err(Error::bad_json("The event is not a canonical JSON object")),
    }
}

/// Stripped state from another server (stripped events or, since v1.16, full PDUs), checked for
/// shape and size and reduced to what clients get. A create event given as a PDU must be this
/// room's (its hash is the room id in v12).
pub fn stripped_from_remote(
    list: &[Value],
    room_id: &RoomId,
    rules: &RoomVersionRules,
) -> Result<Vec<Value>> {
    if list.len() > MAX_STRIPPED_EVENTS {
        return Err(Error::too_large("Too many stripped state events"));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut total = 0;
    for v in list {
        let (Some(kind), Some(key), Some(sender), Some(content)) = (
            v.get("type").and_then(Value::as_str),
            v.get("state_key").and_then(Value::as_str),
            v.get("sender").and_then(Value::as_str),
            v.get("content").filter(|c| c.is_object()),
        ) else {
            return Err(Error::bad_json("Malformed stripped state event"));
        };
        if UserId::parse(sender).is_err() || kind.len() > 255 || key.len() > 255 {
            return Err(Error::bad_json("Malformed stripped state event"));
        }
        let size = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
        total += size.min(MAX_STRIPPED_BYTES + 1);
        if size > MAX_PDU_BYTES || total > MAX_STRIPPED_BYTES {
            return Err(Error::too_large("Stripped state too large"));
        }
        let is_pdu = v.get("signatures").is_some() && v.get("hashes").is_some();
        if kind == "m.room.create" && key.is_empty() && is_pdu {
            let mut obj = object(v)?;
            obj.remove("unsigned");
            obj.remove("event_id");
            let belongs = if rules.authorization.room_create_event_id_as_room_id {
                reference_hash(&obj, rules)
                    .ok()
                    .is_some_and(|h| room_id.as_str().strip_prefix('!') == Some(h.as_str()))
            } else {
                v.get("room_id").and_then(Value::as_str) == Some(room_id.as_str())
            };
            if !belongs {
                return Err(Error::bad_json(
                    "The create event in the stripped state is not this room's",
                ));
            }
        }
        out.push(json!({ "type": kind, "state_key": key, "sender": sender, "content": content }));
    }
    Ok(out)
}

/// The servers worth trying to join or leave a room through: `first`, then the room id's
/// server, the given hints, and the senders of the stripped state (the creator first).
pub fn helper_servers(
    me: &ServerName,
    first: &ServerName,
    room_id: &RoomId,
    hints: &[String],
    stripped: &[Value],
) -> Vec<OwnedServerName> {
    let mut out: Vec<OwnedServerName> = vec![first.to_owned()];
    out.extend(room_id.server_name().map(ToOwned::to_owned));
    out.extend(
        hints
            .iter()
            .filter_map(|s| ServerName::parse(s.as_str()).ok()),
    );
    let mut senders: Vec<&Value> = stripped.iter().collect();
    senders.sort_by_key(|e| e["type"] != "m.room.create");
    out.extend(
        senders
            .iter()
            .filter_map(|e| e["sender"].as_str())
            .filter_map(|u| UserId::parse(u).ok())
            .map(|u| u.server_name().to_owned()),
    );
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| s != me && seen.insert(s.clone()));
    out.truncate(MAX_SERVERS);
    out
}

impl RoomState {
    /// Signs an event template built on this room (see `template`) as this server and checks it
    /// against the room's current state; the room itself is not changed.
    pub fn sign_template(
        &self,
        srv: &Services,
        template: &Value,
    ) -> Result<(OwnedEventId, CanonicalJsonObject)> {
        let mut obj = object(template)?;
        let id = srv.rooms().sign_pdu(&mut obj, &self.rules)?;
        let event_id =
            OwnedEventId::try_from(format!("${id}")).map_err(|e| Error::unknown(e.to_string()))?;
        let json = serde_json::to_string(&obj)?;
        if json.len() > MAX_PDU_BYTES {
            return Err(Error::too_large("Event too large"));
        }
        let pdu = Pdu::parse(event_id.as_str(), &json).map_err(Error::bad_json)?;
        let by_id: std::collections::HashMap<OwnedEventId, Arc<Pdu>> = self
            .state
            .values()
            .map(|p| (p.event_id.clone(), p.clone()))
            .collect();
        state_res::check_state_independent_auth_rules(&self.rules.authorization, &*pdu, |id| {
            by_id.get(id).cloned()
        })
        .map_err(Error::forbidden)?;
        state_res::check_state_dependent_auth_rules(&self.rules.authorization, &*pdu, |t, k| {
            self.state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .map_err(Error::forbidden)?;
        crate::services::policy::access_rules::check(&srv.policy_rules, &self.state, &pdu)
            .map_err(Error::forbidden)?;
        Ok((event_id, obj))
    }
}

impl FederationFace<'_> {
    /// Checks that `server` signed an event (a co-signature, such as the invitee's server's on
    /// an invite), whoever sent it.
    pub async fn verify_signed_by(
        self,
        obj: &CanonicalJsonObject,
        server: &ServerName,
        rules: &RoomVersionRules,
    ) -> Result<()> {
        let not_signed = || Error::forbidden(format!("The event is not signed by {server}"));
        let sigs = match obj.get("signatures") {
            Some(CanonicalJsonValue::Object(s)) => match s.get(server.as_str()) {
                Some(CanonicalJsonValue::Object(o)) => o.clone(),
                _ => return Err(not_signed()),
            },
            _ => return Err(not_signed()),
        };
        let ts = match obj.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(i)) => i64::from(*i),
            _ => 0,
        };
        let mut set = BTreeMap::new();
        for id in sigs
            .keys()
            .filter(|k| k.starts_with("ed25519:"))
            .take(super::key_fetch::MAX_KEY_IDS_PER_SERVER)
        {
            if let Ok(keys) = self
                .server_verify_keys(server, std::slice::from_ref(id), ts)
                .await
            {
                set.extend(keys);
            }
        }
        if set.is_empty() {
            return Err(Error::forbidden(format!(
                "No key of {server} to check its signature"
            )));
        }
        let mut redacted = redact(obj.clone(), &rules.redaction, None)
            .map_err(|e| Error::bad_json(e.to_string()))?;
        redacted.insert(
            "signatures".into(),
            CanonicalJsonValue::Object(BTreeMap::from([(
                server.to_string(),
                CanonicalJsonValue::Object(sigs),
            )])),
        );
        let map: PublicKeyMap = BTreeMap::from([(server.to_string(), set)]);
        verify_json(&map, &redacted)
            .map_err(|e| Error::forbidden(format!("Bad signature of {server}: {e}")))
    }

    /// Stores an out-of-band membership event of a local user (an outlier: no state, no
    /// timeline), makes it the user's membership and wakes their syncs.
    pub(super) async fn store_out_of_band(
        self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &str,
        json: &str,
        membership: &str,
        remote: Option<NewRemoteMembership<'_>>,
    ) -> Result<()> {
        let pdu = Pdu::parse(event_id, json).map_err(Error::bad_json)?;
        let ids = self.take_positions(|s| &s.events_stream, 1).await?;
        let strings = pdu.strings();
        let ev = pdu.new_event(&strings, room_id.as_str(), json, ids[0], 0, true);
        let write = EventWrite {
            placement: Placement::Outlier,
            memberships: vec![(user.as_str(), membership, event_id, ids[0])],
            out_of_band: Some(OutOfBand {
                user: user.as_str(),
                membership,
                remote,
            }),
            events: vec![ev],
            ..Default::default()
        };
        self.rooms()
            .write_events(room_id.as_str(), ids, write, vec![user.to_owned()])
            .await
    }

    /// `PUT /v2/invite/{roomId}/{eventId}`: another server invites a local user. The event is
    /// checked, co-signed and answered; the invite is recorded (into the room when this server
    /// knows it, out of band otherwise).
    pub async fn receive_invite(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        req: InviteRequest,
    ) -> Result<Value> {
        self.admin().check_room_not_blocked(room_id).await?;
        // The room's version: ours when we know the room, else the one announced.
        let known = self.db.room_version(room_id.as_str()).await?;
        let ver = known.clone().unwrap_or_else(|| req.room_version.clone());
        let version = RoomVersionId::try_from(ver.as_str()).map_err(|_| incompatible(&ver))?;
        let rules = version::supported(&version).ok_or_else(|| incompatible(&ver))?;
        if known.is_some() {
            self.check_acl(room_id, origin).await?;
        }
        let ev = &req.event;
        let (sender, target) = self.invite_parties(origin, room_id, ev).await?;
        let stripped = stripped_from_remote(&req.invite_room_state, room_id, &rules)?;
        let checked = self.check_pdu(ev, &rules).await?;
        if checked.event_id.as_str() != event_id {
            return Err(Error::bad_json("The event id does not match the event"));
        }
        // Our signature next to the inviter's.
        let mut obj = checked.object.clone();
        sign_event(
            self.server_name.as_str(),
            &self.keys.pair,
            &mut obj,
            &rules.redaction,
        )
        .map_err(|e| Error::bad_json(e.to_string()))?;
        let signed = serde_json::to_value(&obj)?;
        let json = serde_json::to_string(&obj)?;
        // A retried request changes nothing.
        let current = self
            .db
            .membership(target.as_str(), room_id.as_str())
            .await?;
        if current.as_ref().is_some_and(|m| m.event_id == event_id) {
            return Ok(json!({ "event": signed }));
        }
        if let Some(m) = &current {
            if m.membership == "join" || m.membership == "ban" {
                return Err(Error::forbidden(format!(
                    "The user's membership is {}",
                    m.membership
                )));
            }
        }
        if known.is_some() {
            let c = CheckedPdu {
                event_id: checked.event_id.clone(),
                object: obj,
                json,
            };
            self.invite_into_known_room(origin, room_id, c, &rules)
                .await?;
            return Ok(json!({ "event": signed }));
        }
        let servers = helper_servers(&self.server_name, origin, room_id, &req.via, &stripped);
        let servers: Vec<&str> = servers.iter().map(|s| s.as_str()).collect();
        let stripped_json = serde_json::to_string(&stripped)?;
        let servers_json = serde_json::to_string(&servers)?;
        self.store_out_of_band(
            &target,
            room_id,
            event_id,
            &json,
            "invite",
            Some(NewRemoteMembership {
                stripped_state: &stripped_json,
                servers: &servers_json,
                room_version: version.as_str(),
            }),
        )
        .await?;
        tracing::info!(%room_id, %target, inviter = %sender, "invite received over federation");
        Ok(json!({ "event": signed }))
    }

    /// The inviter and the invitee of an invite event, checked before its signatures (cheap
    /// refusals first): a member invite for this room, from a user of the requesting server,
    /// to an active local user.
    async fn invite_parties(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        ev: &Value,
    ) -> Result<(ruma::OwnedUserId, ruma::OwnedUserId)> {
        let str_field = |k: &str| ev.get(k).and_then(Value::as_str);
        if str_field("type") != Some("m.room.member")
            || ev["content"]["membership"].as_str() != Some("invite")
        {
            return Err(Error::bad_json("Not an invite event"));
        }
        if str_field("room_id") != Some(room_id.as_str()) {
            return Err(Error::bad_json("The event is not for this room"));
        }
        let sender = UserId::parse(str_field("sender").unwrap_or_default())
            .map_err(|_| Error::bad_json("Invalid sender"))?;
        if sender.server_name() != origin {
            return Err(Error::forbidden(
                "The inviter is not a user of the requesting server",
            ));
        }
        let target = UserId::parse(str_field("state_key").unwrap_or_default())
            .map_err(|_| Error::bad_json("Invalid state_key"))?;
        if !self.is_local(&target) {
            return Err(Error::bad_json("The invitee is not a user of this server"));
        }
        if self
            .db
            .get_user(target.as_str())
            .await?
            .is_none_or(|u| u.deactivated == 1)
        {
            return Err(Error::not_found("Unknown user"));
        }
        Ok((sender, target))
    }

    /// An invite into a room known here goes through the room like any event: accepted, or
    /// refused with the reason.
    async fn invite_into_known_room(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        invite: CheckedPdu,
        rules: &RoomVersionRules,
    ) -> Result<()> {
        let rid = room_id.to_owned();
        match self
            .accept_with_gaps(origin, &rid, vec![invite], rules)
            .await?
            .pop()
            .map(|(_, o)| o)
        {
            Some(Outcome::Accepted | Outcome::AlreadyKnown) => Ok(()),
            Some(Outcome::Rejected(e)) => Err(Error::forbidden(format!("Invite refused: {e}"))),
            Some(Outcome::SoftFailed) => Err(Error::forbidden("Invite refused")),
            // Its prev events cannot be had: refused. Kept out of band in a room known
            // here, it would be an invite the room's state never checked, which the user
            // could neither accept nor reject.
            Some(Outcome::MissingPrevs(_)) | None => Err(Error::forbidden(
                "Invite refused: its previous events cannot be obtained",
            )),
        }
    }

    /// The stripped state other servers are sent with an invite or a knock (full PDUs), plus
    /// `extra` events (the inviter's member event).
    pub(super) async fn stripped_state_pdus(
        self,
        room_id: &RoomId,
        extra: &[&str],
    ) -> Result<Vec<Value>> {
        let mut rows = self
            .db
            .current_state_events(&[room_id.to_string()], Some(STRIPPED_TYPES))
            .await?;
        if !extra.is_empty() {
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            rows.extend(self.db.get_events(&extra).await?);
        }
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .iter()
            .filter(|r| seen.insert(r.event_id.clone()))
            .map(|r| outgoing_pdu(&r.json))
            .collect())
    }

    /// A local user invites a user of another server: the invite is built here, co-signed by
    /// the invitee's server through `/v2/invite`, then added to the room (and sent to the room's
    /// other servers as usual).
    pub async fn invite_remote(
        self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        content: Value,
    ) -> Result<()> {
        let dest = target.server_name().to_owned();
        if !super::allowed(&self.config.federation, &dest) {
            return Err(Error::forbidden(format!(
                "Federation with {dest} is not allowed"
            )));
        }
        let (event_id, obj, version, rules, sender_member) = {
            let guard = self.rooms().lock_room(room_id).await?;
            let room = guard
                .as_ref()
                .ok_or_else(|| Error::forbidden("You are not in this room"))?;
            if !room.federates() {
                return Err(Error::forbidden(
                    "This room is not federated (m.federate is false)",
                ));
            }
            match room.membership(target) {
                Some(MembershipState::Join) => {
                    return Err(Error::forbidden("User is already in the room"))
                }
                Some(MembershipState::Ban) => {
                    return Err(Error::forbidden("User is banned from the room"))
                }
                Some(MembershipState::Invite) => return Ok(()),
                _ => {}
            }
            let template =
                room.template(sender, "m.room.member", Some(target.as_str()), content)?;
            let (event_id, obj) = room.sign_template(self.s, &template)?;
            let sender_member = room
                .get(StateEventType::RoomMember, sender.as_str())
                .map(|p| p.event_id.to_string());
            (
                event_id,
                obj,
                room.version.clone(),
                room.rules.clone(),
                sender_member,
            )
        };
        let extra: Vec<&str> = sender_member.iter().map(String::as_str).collect();
        let invite_room_state = self.stripped_state_pdus(room_id, &extra).await?;
        let invite_room_state = invite_room_state
            .iter()
            .map(|pdu| raw_json(pdu).map(RawStrippedState::Pdu))
            .collect::<Result<_>>()?;
        let request = create_invite::v2::Request::new(
            room_id.to_owned(),
            event_id.clone(),
            version.clone(),
            raw_json(&obj)?,
            invite_room_state,
        );
        let resp = self.call(&dest, request).await?;
        let returned = resp.get("event").filter(|e| e.is_object()).ok_or_else(|| {
            Error::bad_json(format!("{dest} answered the invite without an event"))
        })?;
        let checked = self.check_pdu(returned, &rules).await?;
        if checked.event_id != event_id {
            return Err(Error::bad_json(format!("{dest} changed the invite event")));
        }
        self.verify_signed_by(&checked.object, &dest, &rules)
            .await?;
        let pdu = Pdu::parse(checked.event_id.as_str(), &checked.json).map_err(Error::bad_json)?;
        if pdu.kind != TimelineEventType::RoomMember {
            return Err(Error::bad_json(format!("{dest} changed the invite event")));
        }
        match self
            .rooms()
            .accept_remote_pdus(room_id, vec![checked])
            .await?
            .pop()
            .map(|(_, o)| o)
        {
            Some(Outcome::Accepted | Outcome::AlreadyKnown) => Ok(()),
            Some(Outcome::Rejected(e)) => Err(Error::forbidden(format!("Invite refused: {e}"))),
            Some(Outcome::SoftFailed) => Err(Error::forbidden(
                "The room changed meanwhile: the invite is no longer allowed",
            )),
            Some(Outcome::MissingPrevs(_)) | None => {
                Err(Error::unknown("The invite could not be added to the room"))
            }
        }
    }
}
