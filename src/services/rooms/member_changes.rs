//! Membership: join, invite, leave, kick, ban, unban, forget; profile propagation.

use crate::services::rooms::RoomsFace;
use ruma::api::federation::query::get_room_information;
use ruma::{
    events::{room::member::MembershipState, StateEventType},
    OwnedRoomId, RoomAliasId, RoomId, UserId,
};
use serde_json::{json, Value};

use super::EventSpec;
use crate::{Error, Result};

/// What [`RoomsFace::set_membership`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberOp {
    Invite,
    /// A kick, or one's own leave.
    Leave,
    Ban,
    /// A leave allowed only while the target is banned.
    Unban,
}

impl MemberOp {
    /// The membership the event sets.
    pub fn membership(self) -> MembershipState {
        match self {
            Self::Invite => MembershipState::Invite,
            Self::Leave | Self::Unban => MembershipState::Leave,
            Self::Ban => MembershipState::Ban,
        }
    }
}

impl RoomsFace<'_> {
    /// The displayname and avatar_url of a local user, for their member events.
    async fn profile_content(self, user: &UserId) -> Result<Value> {
        let mut c = json!({ "membership": MembershipState::Join });
        if let Some(u) = self.db.get_user(user.as_str()).await? {
            if let Some(d) = u.displayname {
                c["displayname"] = json!(d);
            }
            if let Some(a) = u.avatar_url {
                c["avatar_url"] = json!(a);
            }
        }
        Ok(c)
    }

    /// Resolves a room id or a local alias.
    pub(super) async fn resolve_room(self, id_or_alias: &str) -> Result<OwnedRoomId> {
        if id_or_alias.starts_with('#') {
            let alias = RoomAliasId::parse(id_or_alias)
                .map_err(|_| Error::invalid_param("Invalid room alias"))?;
            self.resolve_alias(&alias).await
        } else {
            RoomId::parse(id_or_alias).map_err(|_| Error::invalid_param("Invalid room id"))
        }
    }

    /// A room id from a room id or alias to join or knock on; a remote alias is asked of its
    /// server, whose answer adds to `via`.
    async fn resolve_for_join(
        self,
        id_or_alias: &str,
        via: &mut Vec<ruma::OwnedServerName>,
    ) -> Result<OwnedRoomId> {
        Ok(match RoomAliasId::parse(id_or_alias) {
            Ok(alias) if alias.server_name() != self.server_name => {
                let request = get_room_information::v1::Request::new(alias.clone());
                let v = self.call(alias.server_name(), request).await?;
                via.push(alias.server_name().to_owned());
                via.extend(
                    v["servers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().and_then(|s| ruma::ServerName::parse(s).ok())),
                );
                RoomId::parse(v["room_id"].as_str().unwrap_or_default())
                    .map_err(|_| Error::not_found("Room alias not found"))?
            }
            _ => self.resolve_room(id_or_alias).await?,
        })
    }

    pub async fn join_room(
        self,
        user: &UserId,
        id_or_alias: &str,
        reason: Option<&str>,
        mut via: Vec<ruma::OwnedServerName>,
    ) -> Result<OwnedRoomId> {
        self.admin().check_not_suspended(user)?;
        let room_id = self.resolve_for_join(id_or_alias, &mut via).await?;
        self.admin().check_room_not_blocked(&room_id).await?;
        let mut content = self.profile_content(user).await?;
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        let (user_c, wanted) = (user.to_owned(), content.clone());
        let check: super::writer::Check = Box::new(move |room| {
            if room.membership(&user_c) != Some(MembershipState::Join) {
                return Ok(true);
            }
            // Already joined: only a profile change makes a new event.
            let current: Value = room
                .get(StateEventType::RoomMember, user_c.as_str())
                .and_then(|p| serde_json::from_str(p.content.get()).ok())
                .unwrap_or_default();
            Ok(current.get("displayname") != wanted.get("displayname")
                || current.get("avatar_url") != wanted.get("avatar_url"))
        });
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            // Not known here: join through another server; with a pending invite (or knock),
            // the inviter's (knock's) server first, then the others kept with it.
            let current = self.db.membership(user.as_str(), room_id.as_str()).await?;
            if let Some(m) = current.filter(|m| m.membership == "invite" || m.membership == "knock")
            {
                let (servers, _) = self.out_of_band_servers(&room_id, &m.event_id).await?;
                via.splice(0..0, servers);
            }
            if let Some(server) = room_id.server_name() {
                via.push(server.to_owned());
            }
            let mut seen = std::collections::HashSet::new();
            via.retain(|s| seen.insert(s.clone()));
            if via.is_empty() {
                return Err(Error::not_found(
                    "This server does not know this room; name a server that does (via)",
                ));
            }
            if let Some(r) = reason {
                content["reason"] = json!(r);
            }
            let joined = self.join_remote(user, &room_id, &via, content).await?;
            self.db
                .delete_remote_memberships(user.as_str(), room_id.as_str())
                .await?;
            return Ok(joined);
        }
        let spec = EventSpec::state(StateEventType::RoomMember, user.as_str(), content);
        self.submit(&room_id, user.to_owned(), None, None, spec, Some(check))
            .await?;
        Ok(room_id)
    }

    /// Sets a user's membership: invite, leave (a kick, or one's own leave), ban, or unban (a
    /// leave allowed only while the target is banned).
    pub async fn set_membership(
        self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        op: MemberOp,
        reason: Option<&str>,
        extra: Option<Value>,
    ) -> Result<()> {
        let membership = op.membership();
        let unban = op == MemberOp::Unban;
        if matches!(membership, MembershipState::Invite | MembershipState::Join) {
            self.admin().check_not_suspended(sender)?;
            self.admin().check_room_not_blocked(room_id).await?;
        }
        if membership == MembershipState::Invite && self.admin().is_shadow_banned(sender) {
            // Answered as sent, sent nowhere (Synapse's shadow ban).
            return Ok(());
        }
        if membership == MembershipState::Invite
            && self.is_local(target)
            && self
                .db
                .get_user(target.as_str())
                .await?
                .is_none_or(|u| u.deactivated == 1)
        {
            return Err(Error::not_found("Unknown user"));
        }
        let mut content = json!({ "membership": membership });
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                content[k] = v;
            }
        }
        if membership == MembershipState::Invite && !self.is_local(target) {
            if self.db.room_version(room_id.as_str()).await?.is_none() {
                return Err(Error::forbidden("You are not in this room"));
            }
            return self.invite_remote(sender, room_id, target, content).await;
        }
        if membership == MembershipState::Invite {
            // The invitee's profile, as Synapse does, so clients can show who was invited.
            if let Some(u) = self.db.get_user(target.as_str()).await? {
                if let Some(d) = u.displayname {
                    content["displayname"] = json!(d);
                }
                if let Some(a) = u.avatar_url {
                    content["avatar_url"] = json!(a);
                }
            }
        }
        let (sender_c, target_c) = (sender.to_owned(), target.to_owned());
        let check: super::writer::Check = Box::new(move |room| {
            use MembershipState::{Ban, Invite, Join, Leave};
            let current = room.membership(&target_c);
            if unban && current != Some(Ban) {
                return Err(Error::forbidden("User is not banned"));
            }
            match (op.membership(), current) {
                (Invite, Some(Join)) => Err(Error::forbidden("User is already in the room")),
                (Invite, Some(Invite)) => Ok(false),
                (Invite, Some(Ban)) => Err(Error::forbidden("User is banned from the room")),
                (Leave, Some(Ban)) if sender_c == target_c => {
                    Err(Error::forbidden("You are banned"))
                }
                (Leave, None | Some(Leave)) if sender_c != target_c => {
                    Err(Error::forbidden("User is not in the room"))
                }
                _ => Ok(true),
            }
        });
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            return Err(Error::forbidden("You are not in this room"));
        }
        let spec = EventSpec::state(StateEventType::RoomMember, target.as_str(), content);
        self.submit(room_id, sender.to_owned(), None, None, spec, Some(check))
            .await?;
        Ok(())
    }

    pub async fn leave_room(
        self,
        user: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let current = self.db.membership(user.as_str(), room_id.as_str()).await?;
        match current.as_ref().map(|m| m.membership.as_str()) {
            None => return Err(Error::not_found("You are not in this room")),
            Some("leave") => return Ok(()),
            _ => {}
        }
        let joined = current.as_ref().is_some_and(|m| m.membership == "join");
        if let Some(m) = current.filter(|m| m.membership == "invite" || m.membership == "knock") {
            if self.db.room_version(room_id.as_str()).await?.is_none() {
                // An invite or knock in a room not known here: through another server.
                return self.leave_remote(user, room_id, &m, reason).await;
            }
        }
        if joined {
            self.policy()
                .policy_promote_before_leave(user, room_id)
                .await?;
        }
        self.set_membership(user, room_id, user, MemberOp::Leave, reason, None)
            .await
    }

    /// Knocks on a room (spec: Knocking): a `knock` membership in a room whose join rule
    /// allows it, through another server when the room is not known here.
    pub async fn knock_room(
        self,
        user: &UserId,
        id_or_alias: &str,
        reason: Option<&str>,
        mut via: Vec<ruma::OwnedServerName>,
    ) -> Result<OwnedRoomId> {
        let room_id = self.resolve_for_join(id_or_alias, &mut via).await?;
        let mut content = self.profile_content(user).await?;
        content["membership"] = json!("knock");
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            via.extend(room_id.server_name().map(ToOwned::to_owned));
            let mut seen = std::collections::HashSet::new();
            via.retain(|s| *s != self.server_name && seen.insert(s.clone()));
            if via.is_empty() {
                return Err(Error::not_found(
                    "This server does not know this room; name a server that does (via)",
                ));
            }
            self.knock_remote(user, &room_id, &via, content).await?;
            return Ok(room_id);
        }
        if !self
            .room_rules(room_id.as_str())
            .await?
            .authorization
            .knocking
        {
            return Err(Error::forbidden(
                "This room's version does not support knocking",
            ));
        }
        let user_c = user.to_owned();
        let check: super::writer::Check = Box::new(move |room| match room.membership(&user_c) {
            Some(MembershipState::Join) => Err(Error::forbidden("You are already in the room")),
            Some(MembershipState::Invite) => {
                Err(Error::forbidden("You are already invited to the room"))
            }
            Some(MembershipState::Ban) => Err(Error::forbidden("You are banned from the room")),
            Some(MembershipState::Knock) => Ok(false),
            _ => Ok(true),
        });
        let spec = EventSpec::state(StateEventType::RoomMember, user.as_str(), content);
        self.submit(&room_id, user.to_owned(), None, None, spec, Some(check))
            .await?;
        Ok(room_id)
    }

    pub async fn forget_room(self, user: &UserId, room_id: &RoomId) -> Result<()> {
        match self.db.membership(user.as_str(), room_id.as_str()).await? {
            Some(m) if m.membership == "join" => {
                Err(Error::bad_request("You must leave the room first"))
            }
            Some(m) if m.membership == "invite" => {
                Err(Error::bad_request("Reject the invite first"))
            }
            Some(_) => Ok(self.db.forget_room(user.as_str(), room_id.as_str()).await?),
            None => Err(Error::not_found("You are not in this room")),
        }
    }

    /// Re-sends the user's member event in every joined room after a profile change.
    pub async fn propagate_profile(self, user: &UserId) {
        let rooms = match self.db.user_memberships(user.as_str()).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "profile propagation"),
        };
        for m in rooms.into_iter().filter(|m| m.membership == "join") {
            if let Err(e) = self.join_room(user, &m.room_id, None, vec![]).await {
                tracing::warn!(room = %m.room_id, error = %e, "profile propagation failed");
            }
        }
    }
}
