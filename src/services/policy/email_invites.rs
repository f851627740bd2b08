//! Email invites (TCHAP.md §7): `POST /rooms/{id}/invite` with `medium: "email"`. This server
//! acts as the identity server: the `m.room.third_party_invite` event carries its ed25519
//! signing key, and when the address is later bound to an account the member invite carries a
//! `third_party_invite.signed` block signed with the same key (checked by the auth rules).
//!
//! The invitation is recorded in `email_invites` (origin = the inviting server). When the
//! address belongs to another server of the federation, that server is told
//! (`/_matrix/federation/unstable/fr.gouv.tchap/email_invite`) and keeps a row with origin =
//! the inviting server: its registration gate sees the address as invited. When the address is
//! bound there, it tells the origin (`…/email_bound`), which sends the member invite.

use crate::services::policy::PolicyFace;
use crate::services::rooms::MemberOp;
use axum::http::Method;
use base64::Engine;
use ruma::events::StateEventType;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::{access_rules, email};
use crate::{
    services::{requester::Requester, rooms::EventSpec},
    store::threepids::EmailInviteRow,
    util, Error, Result,
};

/// Federation path where the address's home server is told about an invitation.
pub const ANNOUNCE_PATH: &str = "/_matrix/federation/unstable/fr.gouv.tchap/email_invite";
/// Federation path where the inviting server is told the address was bound.
pub const BOUND_PATH: &str = "/_matrix/federation/unstable/fr.gouv.tchap/email_bound";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// An address shown to room members: the first two characters of the local part and the
/// domain (`je…@interieur.gouv.fr`).
pub fn masked(address: &str) -> String {
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let head: String = local.chars().take(2).collect();
    format!("{head}…@{domain}")
}

impl PolicyFace<'_> {
    /// `POST /rooms/{id}/invite` with an email address.
    pub async fn invite_by_email(
        self,
        r: &Requester,
        room_id: &RoomId,
        address: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        if !self.policy_rules.enabled() {
            return Err(Error::bad_request(
                "Third-party invites are not supported on this server",
            ));
        }
        if !email::is_valid(address) {
            return Err(Error::invalid_param("Invalid email address"));
        }
        let address = email::normalise(address);
        // Bound here, or anywhere in the federation (the annuaire carries the bindings).
        if let Some(user) = self.account_for_email(&address).await? {
            return self
                .rooms()
                .set_membership(&r.user_id, room_id, &user, MemberOp::Invite, reason, None)
                .await;
        }
        self.ratelimit.check(
            "email_invite",
            r.user_id.as_str(),
            self.config.rate_limits.email_invite,
        )?;
        let home = self.policy_rules.home_for_email(&address);
        let to_externals = home
            .as_ref()
            .is_some_and(|h| self.policy_rules.is_external_server(&h.server));
        let admin = self.accounts().is_admin(&r.user_id).await?;
        let room_name = self.email_invite_room(room_id, to_externals, admin).await?;
        let pending = self.db.pending_email_invites(&address).await?;
        if pending
            .iter()
            .any(|p| p.origin == self.server_name.as_str() && p.room_id == room_id.as_str())
        {
            return Ok(()); // already invited to this room
        }
        let token = util::random_string(32);
        let key_validity_url = format!(
            "{}_matrix/identity/v2/pubkey/isvalid",
            with_slash(&self.config.public_baseurl())
        );
        let content = json!({
            "display_name": masked(&address),
            "key_validity_url": key_validity_url,
            "public_key": self.keys.public_b64,
            "public_keys": [{ "public_key": self.keys.public_b64, "key_validity_url": key_validity_url }],
        });
        let mut spec = EventSpec::state(StateEventType::RoomThirdPartyInvite, &token, content);
        spec.bypass_policy = admin;
        self.rooms()
            .submit(room_id, r.user_id.clone(), None, None, spec, None)
            .await?;
        let row = EmailInviteRow {
            token: token.clone(),
            origin: self.server_name.to_string(),
            room_id: room_id.to_string(),
            address: address.clone(),
            sender: r.user_id.to_string(),
            created_ts: util::now_ms(),
        };
        self.db.insert_email_invite(&row).await?;

        self.send_invitation_email(&r.user_id, room_id, &address, room_name)
            .await?;
        // The address's home server keeps a row so its registration gate sees the invite.
        if let Some(home) = home.filter(|h| h.server != self.server_name) {
            let body = json!({
                "token": token,
                "room_id": room_id,
                "address": address,
                "sender": r.user_id,
            });
            if let Err(e) = self
                .federation()
                .federation_request(&home.server, Method::POST, ANNOUNCE_PATH, Some(&body))
                .await
            {
                tracing::warn!(server = %home.server, error = %e.message, "email invite not announced to the address's server");
            }
        }
        Ok(())
    }

    /// The room's name for the invitation, after the rules the event alone cannot show (it
    /// carries a masked address): no external into a restricted room unless an admin asks.
    async fn email_invite_room(
        self,
        room_id: &RoomId,
        to_externals: bool,
        admin: bool,
    ) -> Result<Option<String>> {
        let guard = self.rooms().lock_room(room_id).await?;
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::forbidden("You are not in this room"))?;
        let rule = access_rules::room_rule(&room.state);
        if rule == access_rules::Rule::Restricted && to_externals && !admin {
            return Err(Error::forbidden(
                "This address belongs to an external user and this room is restricted to agents",
            ));
        }
        Ok(room
            .get(StateEventType::RoomName, "")
            .and_then(|p| p.content_str("name")))
    }

    /// The invitation email (a failure to send is logged: the invite stands).
    async fn send_invitation_email(
        self,
        inviter: &ruma::UserId,
        room_id: &RoomId,
        address: &str,
        room_name: Option<String>,
    ) -> Result<()> {
        let inviter_name = self
            .db
            .get_user(inviter.as_str())
            .await?
            .and_then(|u| u.displayname)
            .unwrap_or_else(|| inviter.to_string());
        // User-chosen texts in an email sent from the official address: one line, short.
        let short = |t: String| -> String {
            let one_line: String = t
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            match one_line.char_indices().nth(80) {
                Some((i, _)) => format!("{}…", &one_line[..i]),
                None => one_line,
            }
        };
        let inviter = short(inviter_name);
        let room_label = short(room_name.unwrap_or_else(|| "a room".to_owned()));
        let body = format!(
            "{inviter} invited you to join {room_label} on {app}.\n\n\
             Create your account with this address to accept: {link}\n",
            app = self.mailer.app_name,
            link = self.config.public_baseurl(),
        );
        let subject = format!("{inviter} invited you to {}", self.mailer.app_name);
        if let Err(e) = self.mailer.send(address, &subject, body).await {
            tracing::warn!(%room_id, error = %e.message, "email invitation not sent");
        }
        Ok(())
    }

    /// Federation: another server announces an email invitation for an address hosted here.
    pub async fn receive_email_invite(self, origin: &ServerName, body: &Value) -> Result<()> {
        if !self.policy_rules.enabled() || !self.policy_rules.is_peer(origin) {
            return Err(Error::forbidden("Not a server of this federation"));
        }
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 320)
                .ok_or_else(|| Error::bad_json(format!("Missing or invalid {k}")))
        };
        let (token, room_id, address, sender) = (
            field("token")?,
            field("room_id")?,
            field("address")?,
            field("sender")?,
        );
        let room_id = util::parse_room_id(room_id)?;
        let sender = util::parse_user_id(sender)?;
        if sender.server_name() != origin || !email::is_valid(address) {
            return Err(Error::bad_json(
                "The sender is not on the requesting server",
            ));
        }
        let address = email::normalise(address);
        if self
            .policy_rules
            .home_for_email(&address)
            .is_none_or(|h| h.server != self.server_name)
        {
            return Err(Error::forbidden(
                "This address is not hosted on this server",
            ));
        }
        self.db
            .insert_email_invite(&EmailInviteRow {
                token: token.to_owned(),
                origin: origin.to_string(),
                room_id: room_id.to_string(),
                address,
                sender: sender.to_string(),
                created_ts: util::now_ms(),
            })
            .await?;
        Ok(())
    }

    /// Federation: the server of `mxid` says the address (hosted there) is now bound to it:
    /// the invitations made from here become member invites.
    pub async fn receive_email_bound(self, origin: &ServerName, body: &Value) -> Result<()> {
        if !self.policy_rules.enabled() || !self.policy_rules.is_peer(origin) {
            return Err(Error::forbidden("Not a server of this federation"));
        }
        let address = body
            .get("address")
            .and_then(Value::as_str)
            .filter(|a| a.len() <= 320 && email::is_valid(a))
            .ok_or_else(|| Error::bad_json("Missing or invalid address"))?;
        let mxid = body
            .get("mxid")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("Missing mxid"))?;
        let user = util::parse_user_id(mxid)?;
        let address = email::normalise(address);
        let home_ok = self
            .policy_rules
            .home_for_email(&address)
            .is_some_and(|h| h.server == origin);
        if user.server_name() != origin || !home_ok {
            return Err(Error::forbidden(
                "The requesting server is not both the user's and the address's server",
            ));
        }
        self.resolve_own_email_invites(&user, &address).await
    }

    /// The body of the `email_bound` hook: pending invitations for the address become member
    /// invites (made here, or by the inviting server). Failures are logged.
    pub(super) async fn email_invites_bound(self, user: &UserId, address: &str) {
        if !self.policy_rules.enabled() {
            return;
        }
        let address = email::normalise(address);
        if let Err(e) = self.resolve_own_email_invites(user, &address).await {
            tracing::warn!(%user, error = %e.message, "email invites not resolved");
        }
        let pending = match self.db.pending_email_invites(&address).await {
            Ok(p) => p,
            Err(e) => return tracing::warn!(error = %e, "pending email invites"),
        };
        let mut origins: Vec<String> = pending
            .into_iter()
            .filter(|p| p.origin != self.server_name.as_str())
            .map(|p| p.origin)
            .collect();
        origins.sort_unstable();
        origins.dedup();
        for origin in origins {
            let Ok(server) = ServerName::parse(&origin) else {
                continue;
            };
            let body = json!({ "address": address, "mxid": user });
            match self
                .federation()
                .federation_request(&server, Method::POST, BOUND_PATH, Some(&body))
                .await
            {
                Ok(_) => {
                    for p in self
                        .db
                        .pending_email_invites(&address)
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| p.origin == origin)
                    {
                        let _ = self
                            .db
                            .resolve_email_invite(&p.origin, &p.token, util::now_ms())
                            .await;
                    }
                }
                Err(e) => {
                    tracing::warn!(%origin, error = %e.message, "inviting server not told of a bound address")
                }
            }
        }
    }

    /// Invitations made from this server for an address, turned into member invites of `user`
    /// carrying the signed third-party block; each resolved once its invite is sent.
    async fn resolve_own_email_invites(self, user: &UserId, address: &str) -> Result<()> {
        let pending = self.db.pending_email_invites(address).await?;
        for p in pending
            .into_iter()
            .filter(|p| p.origin == self.server_name.as_str())
        {
            let (Ok(room_id), Ok(inviter)) = (
                util::parse_room_id(&p.room_id),
                util::parse_user_id(&p.sender),
            ) else {
                continue;
            };
            let block = self.third_party_block(user, &p.token, &masked(address))?;
            let extra = json!({ "third_party_invite": block });
            match self
                .rooms()
                .set_membership(
                    &inviter,
                    &room_id,
                    user,
                    MemberOp::Invite,
                    None,
                    Some(extra),
                )
                .await
            {
                Ok(()) => {
                    self.db
                        .resolve_email_invite(&p.origin, &p.token, util::now_ms())
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(room = %p.room_id, %user, error = %e.message, "email invite not turned into an invite")
                }
            }
        }
        Ok(())
    }

    /// `{display_name, signed: {mxid, token, signatures}}`, signed with this server's key.
    fn third_party_block(self, user: &UserId, token: &str, display_name: &str) -> Result<Value> {
        let mut signed = CanonicalJsonObject::new();
        signed.insert("mxid".into(), CanonicalJsonValue::String(user.to_string()));
        signed.insert("token".into(), CanonicalJsonValue::String(token.to_owned()));
        let bytes = serde_json::to_vec(&signed)?;
        let sig = B64.encode(self.keys.sign(&bytes));
        Ok(json!({
            "display_name": display_name,
            "signed": {
                "mxid": user,
                "token": token,
                "signatures": { self.server_name.as_str(): { self.keys.key_id.as_str(): sig } },
            },
        }))
    }
}

fn with_slash(base: &str) -> String {
    if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    }
}
