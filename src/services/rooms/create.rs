//! Room creation (`/createRoom`): the spec's event sequence, presets, overrides.

use crate::services::rooms::RoomsFace;
use ruma::{OwnedRoomId, RoomAliasId, RoomId, UserId};
use serde_json::{json, Map, Value};

pub use super::requests::{CreateRoomRequest, InitialState, Replacement};
use super::{version, EventSpec, RoomState};
use crate::{
    config::EncryptionByDefault,
    services::policy::{access_rules, room_defaults},
    util, Error, Result,
};

impl RoomsFace<'_> {
    pub async fn create_room(
        self,
        creator: &UserId,
        req: CreateRoomRequest,
    ) -> Result<OwnedRoomId> {
        self.create_room_with(creator, req, None).await
    }

    /// Room creation; with a [`Replacement`] (room upgrade) the power levels and state come from
    /// it and no preset state, default encryption or alias is added.
    pub(super) async fn create_room_with(
        self,
        creator: &UserId,
        req: CreateRoomRequest,
        replacement: Option<Replacement>,
    ) -> Result<OwnedRoomId> {
        let public = req.visibility.as_deref() == Some("public");
        let preset = req.preset.clone().unwrap_or_else(|| {
            if public {
                "public_chat"
            } else {
                "private_chat"
            }
            .into()
        });
        if !matches!(
            preset.as_str(),
            "public_chat" | "private_chat" | "trusted_private_chat"
        ) {
            return Err(Error::invalid_param("Unknown preset"));
        }
        if !req.invite_3pid.is_empty() {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "Third-party invites are not supported on this server",
            ));
        }
        let version_str = req
            .room_version
            .clone()
            .unwrap_or_else(|| self.config.default_room_version.clone());
        let (version, rules) = version::parse(&version_str).ok_or_else(|| {
            Error::unsupported_room_version(format!("Room version {version_str} is not supported"))
        })?;
        let mut invitees = vec![];
        for i in &req.invite {
            let u = UserId::parse(i.as_str())
                .map_err(|_| Error::invalid_param(format!("Invalid user id {i}")))?;
            if u.as_str() != creator.as_str() {
                invitees.push(u);
            }
        }
        // Tchap (TCHAP.md §3, §4): the room's access rule and what the creator may create.
        let tchap = self.policy_rules.enabled() && replacement.is_none();
        let access_rule = if tchap {
            Some(self.tchap_create_checks(creator, &req, &invitees).await?)
        } else {
            None
        };
        let alias = match &req.room_alias_name {
            Some(name) => {
                if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
                    return Err(Error::invalid_param("Invalid room_alias_name"));
                }
                let alias = RoomAliasId::parse(format!("#{name}:{}", self.server_name))
                    .map_err(|_| Error::invalid_param("Invalid room_alias_name"))?;
                if self.db.alias(alias.as_str()).await?.is_some() {
                    return Err(Error::room_in_use("Room alias already taken"));
                }
                Some(alias)
            }
            None => None,
        };

        // 1. m.room.create. In v12 the room id is the create event's hash, so two rooms created
        // by one user in the same millisecond with the same content would collide: reserve the
        // id, and on a clash build again one millisecond later (Synapse does the same).
        let mut create = req.creation_content.clone().unwrap_or_default();
        create.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(creator));
        }
        if !rules.authorization.additional_room_creators {
            create.remove("additional_creators");
        }
        // Tchap: externals are additional creators of direct rooms only (the rule event below
        // would refuse it too; refused here before anything is built).
        if let Some(rule) = access_rule {
            let extra = create.get("additional_creators").and_then(Value::as_array);
            let names = extra.into_iter().flatten().filter_map(Value::as_str);
            access_rules::check_creators(&self.policy_rules, rule, names)
                .map_err(Error::forbidden)?;
        }
        let mut attempt = 0;
        let (mut room, mut batch) = loop {
            let provisional = if rules.authorization.room_create_event_id_as_room_id {
                RoomId::parse(format!("!provisional:{}", self.server_name))
            } else {
                RoomId::parse(format!("!{}:{}", util::random_string(18), self.server_name))
            }
            .map_err(|e| Error::unknown(e.to_string()))?;
            let mut room = RoomState::new_room(version.clone(), rules.clone(), provisional);
            room.min_ts = util::now_ms() + attempt;
            let spec = EventSpec::state("m.room.create", "", Value::Object(create.clone()));
            let built = room.build(self.s, creator, spec, None, None)?;
            if self.reserve_room_id(&room.room_id)
                && self.db.room_version(room.room_id.as_str()).await?.is_none()
            {
                break (room, vec![built]);
            }
            attempt += 1;
            if attempt > 20 {
                return Err(Error::unknown("Could not allocate a room id"));
            }
        };
        let room_id = room.room_id.clone();

        // 2. creator joins
        let mut member = json!({ "membership": "join" });
        if let Some(u) = self.db.get_user(creator.as_str()).await? {
            if let Some(d) = u.displayname {
                member["displayname"] = json!(d);
            }
            if let Some(a) = u.avatar_url {
                member["avatar_url"] = json!(a);
            }
        }
        batch.push(room.build(
            self.s,
            creator,
            EventSpec::state("m.room.member", creator.as_str(), member),
            None,
            None,
        )?);

        // 3. power levels
        let creators = room.creators();
        let mut users = Map::new();
        if !creators.contains(creator) {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == "trusted_private_chat" {
            for u in &invitees {
                if !creators.contains(u) {
                    users.insert(u.to_string(), json!(100));
                }
            }
        }
        let mut pl = match &replacement {
            Some(r) => r.power_levels.clone(),
            None if tchap => room_defaults::power_levels(users),
            None => default_power_levels(users, &preset),
        };
        if let Some(o) = &req.power_level_content_override {
            for (k, v) in o {
                pl[k] = v.clone();
            }
        }
        if tchap {
            room_defaults::check_override(&pl).map_err(Error::forbidden)?;
        }
        strip_creators(&mut pl, &room);
        batch.push(room.build(
            self.s,
            creator,
            EventSpec::state("m.room.power_levels", "", pl),
            None,
            None,
        )?);

        // The access rule, before anything it governs.
        if let Some(rule) = access_rule {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(
                    access_rules::EVENT_TYPE,
                    "",
                    json!({ "rule": rule.as_str() }),
                ),
                None,
                None,
            )?);
        }

        // 4. canonical alias
        if let Some(a) = &alias {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state("m.room.canonical_alias", "", json!({ "alias": a })),
                None,
                None,
            )?);
        }

        // 5. preset state, unless given in initial_state
        // A replacement room carries its own state: nothing from presets or defaults.
        let copying = replacement.is_some();
        let given = |t: &str| {
            copying
                || req
                    .initial_state
                    .iter()
                    .any(|s| s.kind == t && s.state_key.is_empty())
        };
        let join_rule = if preset == "public_chat" {
            "public"
        } else {
            "invite"
        };
        // The join rule the room ends up with (initial_state may set its own).
        let final_join_rule = req
            .initial_state
            .iter()
            .find(|s| s.kind == "m.room.join_rules" && s.state_key.is_empty())
            .and_then(|s| s.content["join_rule"].as_str())
            .unwrap_or(join_rule);
        let history = if tchap {
            room_defaults::history_visibility(final_join_rule == "public")
        } else {
            "shared"
        };
        if !given("m.room.join_rules") {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state("m.room.join_rules", "", json!({ "join_rule": join_rule })),
                None,
                None,
            )?);
        }
        if !given("m.room.history_visibility") {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(
                    "m.room.history_visibility",
                    "",
                    json!({ "history_visibility": history }),
                ),
                None,
                None,
            )?);
        }
        if preset != "public_chat" && !given("m.room.guest_access") {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(
                    "m.room.guest_access",
                    "",
                    json!({ "guest_access": "can_join" }),
                ),
                None,
                None,
            )?);
        }

        // Encryption by default (before initial_state, which may set its own).
        let encrypt = match self.config.encryption_by_default {
            // Tchap: private rooms and DMs are encrypted, forums never.
            _ if tchap => final_join_rule != "public",
            EncryptionByDefault::All => true,
            EncryptionByDefault::Invite => preset != "public_chat",
            EncryptionByDefault::Off => false,
        };
        if encrypt && !given("m.room.encryption") {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(
                    "m.room.encryption",
                    "",
                    json!({ "algorithm": "m.megolm.v1.aes-sha2" }),
                ),
                None,
                None,
            )?);
        }

        // 6. initial_state
        for s in req.initial_state {
            if access_rule.is_some() && s.kind == access_rules::EVENT_TYPE && s.state_key.is_empty()
            {
                continue; // sent above
            }
            if matches!(
                s.kind.as_str(),
                "m.room.create" | "m.room.member" | "m.room.power_levels" | "m.room.redaction"
            ) {
                return Err(Error::invalid_param(format!(
                    "{} cannot be set in initial_state",
                    s.kind
                )));
            }
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(&s.kind, &s.state_key, s.content),
                None,
                None,
            )?);
        }

        // Upgrade: the old room's state, then its own power levels.
        if let Some(rep) = replacement {
            for (kind, key, content) in rep.state {
                match room.build(
                    self.s,
                    creator,
                    EventSpec::state(&kind, &key, content),
                    None,
                    None,
                ) {
                    Ok(n) => batch.push(n),
                    Err(e) => {
                        tracing::warn!(%kind, %key, error = %e, "state not copied to the new room")
                    }
                }
            }
            if let Some(mut pl) = rep.final_power_levels {
                strip_creators(&mut pl, &room);
                batch.push(room.build(
                    self.s,
                    creator,
                    EventSpec::state("m.room.power_levels", "", pl),
                    None,
                    None,
                )?);
            }
        }

        // 7. name and topic
        if let Some(name) = req.name {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state("m.room.name", "", json!({ "name": name })),
                None,
                None,
            )?);
        }
        if let Some(topic) = req.topic {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state("m.room.topic", "", json!({ "topic": topic })),
                None,
                None,
            )?);
        }

        // 8. invites (users of other servers are invited once the room exists, below)
        for u in invitees.iter().filter(|u| self.is_local(u)) {
            let target = self.db.get_user(u.as_str()).await?;
            let Some(target) = target.filter(|t| t.deactivated == 0) else {
                return Err(Error::not_found(format!("Unknown user {u}")));
            };
            let mut content = json!({ "membership": "invite" });
            if req.is_direct {
                content["is_direct"] = json!(true);
            }
            if let Some(d) = target.displayname {
                content["displayname"] = json!(d);
            }
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state("m.room.member", u.as_str(), content),
                None,
                None,
            )?);
        }

        // Persisted in its own task: a client hanging up cannot leave a half-created room cached.
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let (id, creator_c) = (room_id.clone(), creator.to_owned());
        tokio::spawn(async move {
            let mut guard = me.rooms().lock_new_room(&id).await;
            *guard = Some(room);
            me.rooms()
                .persist(&mut guard, batch, Some((&creator_c, public)))
                .await
        })
        .await
        .map_err(|e| Error::unknown(e.to_string()))??;
        if let Some(a) = alias {
            if !self.add_alias(creator, &a, &room_id).await? {
                tracing::warn!(alias = %a, "alias taken while the room was being created");
            }
        }
        // Users of other servers: each invite goes through their server. The room exists
        // whatever they answer; a failed invite is logged (as Synapse does).
        let extra = req.is_direct.then(|| json!({ "is_direct": true }));
        for u in invitees.iter().filter(|u| !self.is_local(u)) {
            if let Err(e) = self
                .set_membership(creator, &room_id, u, "invite", None, extra.clone())
                .await
            {
                tracing::warn!(%room_id, invitee = %u, error = %e.message, "remote invite at room creation failed");
            }
        }
        Ok(room_id)
    }
}

/// In room versions that privilege creators, creators must not appear in `users`.
fn strip_creators(pl: &mut Value, room: &RoomState) {
    if room.rules.authorization.explicitly_privilege_room_creators {
        let creators = room.creators();
        if let Some(users) = pl["users"].as_object_mut() {
            users.retain(|u, _| !creators.iter().any(|c| c.as_str() == u));
        }
    }
}

/// The power levels of a new room (before `power_level_content_override`).
fn default_power_levels(users: Map<String, Value>, preset: &str) -> Value {
    json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == "public_chat" { 50 } else { 0 },
        "notifications": { "room": 50 },
    })
}
