//! Server notices (Synapse's `send_server_notice`): messages from a system user in a room of
//! its own with each user. The system user is created on first use without a password (it
//! cannot log in); each local user gets one notices room, created by the system user,
//! invite-only, never encrypted and tagged `m.server_notice` for the user; later notices reuse
//! it (the user is invited again after leaving).

use crate::services::rooms::MemberOp;
use crate::services::rooms::RoomsFace;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::services::{
    requester::Requester,
    rooms::create::{CreateRoomRequest, Replacement},
};
use crate::{config::ServerNoticesConfig, util, Error, Result};

/// The tag clients show notices rooms under.
pub const TAG: &str = "m.server_notice";

/// Serialises notices room creation (one room per user, however many notices race).
#[derive(Default)]
pub struct ServerNotices {
    lock: tokio::sync::Mutex<()>,
}

/// A notice to send.
pub struct Notice<'a> {
    /// The admin who sends it (transaction ids are theirs).
    pub admin: &'a UserId,
    pub user: &'a UserId,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    pub txn: Option<&'a str>,
}

impl<'a> RoomsFace<'a> {
    fn notices_config(self) -> Result<&'a ServerNoticesConfig> {
        self.s
            .config
            .server_notices
            .as_ref()
            .ok_or_else(|| Error::bad_request("Server notices are not enabled on this server"))
    }

    /// The system user's id, when server notices are on.
    pub fn server_notices_user_id(self) -> Option<OwnedUserId> {
        let cfg = self.config.server_notices.as_ref()?;
        UserId::parse(format!(
            "@{}:{}",
            cfg.system_mxid_localpart, self.server_name
        ))
        .ok()
    }

    /// Sends a notice to a local user; returns its event id.
    pub async fn send_server_notice(self, n: Notice<'_>) -> Result<OwnedEventId> {
        let cfg = self.notices_config()?;
        if !self.is_local(n.user) {
            return Err(Error::invalid_param(
                "Server notices can only be sent to local users",
            ));
        }
        match self.db.get_user(n.user.as_str()).await? {
            Some(u) if u.deactivated == 0 => {}
            _ => return Err(Error::not_found("Unknown user")),
        }
        if !n.content.is_object() {
            return Err(Error::bad_json("content must be a JSON object"));
        }
        let system = self
            .server_notices_user_id()
            .ok_or_else(|| Error::unknown("Invalid server notices localpart"))?;
        if system == n.user {
            return Err(Error::invalid_param(
                "Cannot send a notice to the system user",
            ));
        }
        let room = self.notices_room(cfg, &system, n.user).await?;
        let sender = Requester {
            user_id: system,
            // Transaction ids are scoped by this pseudo-device: one per sending admin.
            device_id: format!("notices|{}", n.admin),
        };
        self.send_event(&sender, &room, n.kind, n.state_key, n.content, n.txn)
            .await
    }

    /// The user's notices room, created (or the user invited back) when needed.
    async fn notices_room(
        self,
        cfg: &ServerNoticesConfig,
        system: &UserId,
        user: &UserId,
    ) -> Result<OwnedRoomId> {
        let _guard = self.server_notices.lock.lock().await;
        self.ensure_system_user(cfg, system).await?;
        if let Some(room) = self.db.server_notice_room(user.as_str()).await? {
            let room = util::parse_room_id(&room)?;
            let mine = self
                .db
                .membership(system.as_str(), room.as_str())
                .await?
                .is_some_and(|m| m.membership == "join");
            if mine {
                let theirs = self
                    .db
                    .membership(user.as_str(), room.as_str())
                    .await?
                    .map(|m| m.membership);
                match theirs.as_deref() {
                    Some("join") | Some("invite") => {}
                    Some("ban") => {
                        return Err(Error::forbidden(
                            "The user is banned from their notices room",
                        ))
                    }
                    _ => {
                        self.set_membership(system, &room, user, MemberOp::Invite, None, None)
                            .await?
                    }
                }
                return Ok(room);
            }
        }
        let room = self.create_notices_room(cfg, system, user).await?;
        self.db
            .set_server_notice_room(user.as_str(), room.as_str(), util::now_ms())
            .await?;
        Ok(room)
    }

    async fn create_notices_room(
        self,
        cfg: &ServerNoticesConfig,
        system: &UserId,
        user: &UserId,
    ) -> Result<OwnedRoomId> {
        // Built as a "replacement" room: exactly this state, no preset, no default encryption.
        let power_levels = json!({
            "users": { system.as_str(): 100 },
            "users_default": 0,
            "events_default": 0,
            "state_default": 100,
            "ban": 50, "kick": 50, "redact": 50, "invite": 50,
            "events": {
                "m.room.name": 100, "m.room.avatar": 100, "m.room.topic": 100,
                "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.encryption": 100, "m.room.tombstone": 100,
            },
        });
        let mut state = vec![
            (
                "m.room.join_rules".to_owned(),
                String::new(),
                json!({ "join_rule": "invite" }),
            ),
            (
                "m.room.history_visibility".to_owned(),
                String::new(),
                json!({ "history_visibility": "shared" }),
            ),
            (
                "m.room.guest_access".to_owned(),
                String::new(),
                json!({ "guest_access": "forbidden" }),
            ),
        ];
        state.extend(self.policy().notices_room_state());
        let req = CreateRoomRequest {
            name: Some(cfg.room_name.clone()),
            invite: vec![user.to_string()],
            preset: Some("private_chat".into()),
            ..Default::default()
        };
        let room = self
            .create_room_with(
                system,
                req,
                Some(Replacement {
                    power_levels,
                    state,
                    final_power_levels: None,
                }),
            )
            .await?;
        self.sync()
            .set_room_tag(user, &room, TAG, json!({ "order": 0.5 }))
            .await?;
        Ok(room)
    }

    /// Creates the system user (no password, no device) unless it exists.
    async fn ensure_system_user(self, cfg: &ServerNoticesConfig, system: &UserId) -> Result<()> {
        if self.db.get_user(system.as_str()).await?.is_some() {
            return Ok(());
        }
        match self
            .accounts()
            .register(
                Some(&cfg.system_mxid_localpart),
                None,
                false,
                None,
                None,
                false,
                false,
                &crate::services::accounts::RegistrationAuth::default(),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.errcode == "M_USER_IN_USE" => return Ok(()),
            Err(e) => return Err(e),
        }
        // The system user never expires.
        self.db.delete_validity(system.as_str()).await?;
        self.policy().validity_forget(system);
        if let Some(name) = &cfg.system_mxid_display_name {
            self.sync()
                .set_profile(
                    system,
                    crate::store::users::ProfileField::Displayname,
                    Some(name),
                )
                .await?;
        }
        Ok(())
    }
}
