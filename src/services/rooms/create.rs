//! Room creation (`/createRoom`): the spec's event sequence, presets, overrides.

use crate::services::rooms::MemberOp;
use crate::services::rooms::RoomsFace;
use ruma::events::room::member::MembershipState;
use ruma::events::StateEventType;
use ruma::{
    room_version_rules::RoomVersionRules, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId,
    RoomId, RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

pub use super::requests::{CreateRoomRequest, InitialState, Replacement};
use super::{version, EventSpec, NewPdu, RoomState};
use crate::{
    config::EncryptionByDefault, services::policy::access_rules::Rule, util, Error, Result,
};

/// What a validated `/createRoom` request settles before any event is built.
struct Plan {
    public: bool,
    preset: String,
    version: RoomVersionId,
    rules: RoomVersionRules,
    /// Invited users, the creator left out.
    invitees: Vec<OwnedUserId>,
    /// Tchap: the room's access rule (`None` when the policy is off or for a replacement room).
    access_rule: Option<Rule>,
    alias: Option<OwnedRoomAliasId>,
}

impl RoomsFace<'_> {
    /// Whether createRoom encrypts the rooms of the public preset, and of the private ones
    /// (`private_chat`, `trusted_private_chat`), when the client does not say: the Tchap rules
    /// when they are on (forums are never encrypted, private rooms always), else
    /// `encryption_by_default`.
    pub fn encryption_forced_by_preset(self) -> (bool, bool) {
        if self.policy_rules.enabled() {
            return (false, true);
        }
        match self.config.encryption_by_default {
            EncryptionByDefault::All => (true, true),
            EncryptionByDefault::Invite => (false, true),
            EncryptionByDefault::Off => (false, false),
        }
    }
}

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
        self.admin().check_not_suspended(creator)?;
        let plan = self
            .validate_create(creator, &req, replacement.is_some())
            .await?;
        // 1. m.room.create
        let (mut room, mut batch) = self.create_event(creator, &req, &plan).await?;
        // 2. creator joins
        batch.push(self.creator_join(&mut room, creator).await?);
        // 3. power levels, then (Tchap) the access rule, before anything it governs
        batch.push(self.initial_power_levels(&mut room, creator, &req, &plan, &replacement)?);
        if let Some(spec) = self.policy().creation_rule_event(plan.access_rule) {
            batch.push(room.build(self.s, creator, spec, None, None)?);
        }
        // 4. canonical alias
        if let Some(a) = &plan.alias {
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(
                    StateEventType::RoomCanonicalAlias,
                    "",
                    json!({ "alias": a }),
                ),
                None,
                None,
            )?);
        }
        // 5. preset state (join rules, history visibility, guest access, encryption)
        batch.extend(self.preset_state(&mut room, creator, &req, &plan, replacement.is_some())?);
        // 6. initial_state; upgrade: the old room's state, then its own power levels
        batch.extend(self.initial_state(&mut room, creator, &req.initial_state, &plan)?);
        if let Some(rep) = replacement {
            batch.extend(self.copied_state(&mut room, creator, rep)?);
        }
        // 7. name and topic
        for (kind, field, value) in [
            (StateEventType::RoomName, "name", &req.name),
            (StateEventType::RoomTopic, "topic", &req.topic),
        ] {
            if let Some(v) = value {
                batch.push(room.build(
                    self.s,
                    creator,
                    EventSpec::state(kind, "", json!({ field: v })),
                    None,
                    None,
                )?);
            }
        }
        // 8. invites (users of other servers are invited once the room exists)
        batch.extend(self.local_invites(&mut room, creator, &req, &plan).await?);
        self.persist_new_room(creator, room, batch, &req, plan)
            .await
    }

    /// The request checked: preset, third-party invites, room version, invitees, the Tchap
    /// creation rules, the alias.
    async fn validate_create(
        self,
        creator: &UserId,
        req: &CreateRoomRequest,
        replacing: bool,
    ) -> Result<Plan> {
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
            return Err(Error::bad_request(
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
        if self.admin().is_shadow_banned(creator) {
            // The room is made; its invites go nowhere (Synapse's shadow ban).
            invitees.clear();
        }
        let access_rule = self
            .policy()
            .creation_access_rule(creator, req, &invitees, replacing)
            .await?;
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
        Ok(Plan {
            public,
            preset,
            version,
            rules,
            invitees,
            access_rule,
            alias,
        })
    }

    /// Step 1: m.room.create. In v12 the room id is the create event's hash, so two rooms created
    /// by one user in the same millisecond with the same content would collide: reserve the
    /// id, and on a clash build again one millisecond later (Synapse does the same).
    async fn create_event(
        self,
        creator: &UserId,
        req: &CreateRoomRequest,
        plan: &Plan,
    ) -> Result<(RoomState, Vec<NewPdu>)> {
        let rules = &plan.rules;
        let mut create = req.creation_content.clone().unwrap_or_default();
        create.insert("room_version".into(), json!(plan.version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(creator));
        }
        if !rules.authorization.additional_room_creators {
            create.remove("additional_creators");
        }
        self.policy()
            .check_creation_creators(plan.access_rule, &create)?;
        let mut attempt = 0;
        loop {
            let provisional = if rules.authorization.room_create_event_id_as_room_id {
                RoomId::parse(format!("!provisional:{}", self.server_name))
            } else {
                RoomId::parse(format!("!{}:{}", util::random_string(18), self.server_name))
            }
            .map_err(|e| Error::unknown(e.to_string()))?;
            let mut room = RoomState::new_room(plan.version.clone(), rules.clone(), provisional);
            room.min_ts = util::now_ms() + attempt;
            let spec = EventSpec::state(
                StateEventType::RoomCreate,
                "",
                Value::Object(create.clone()),
            );
            let built = room.build(self.s, creator, spec, None, None)?;
            if self.reserve_room_id(&room.room_id)
                && self.db.room_version(room.room_id.as_str()).await?.is_none()
            {
                return Ok((room, vec![built]));
            }
            attempt += 1;
            if attempt > 20 {
                return Err(Error::unknown("Could not allocate a room id"));
            }
        }
    }

    /// Step 2: The creator's join, with their profile.
    async fn creator_join(self, room: &mut RoomState, creator: &UserId) -> Result<NewPdu> {
        let mut member = json!({ "membership": MembershipState::Join });
        if let Some(u) = self.db.get_user(creator.as_str()).await? {
            if let Some(d) = u.displayname {
                member["displayname"] = json!(d);
            }
            if let Some(a) = u.avatar_url {
                member["avatar_url"] = json!(a);
            }
        }
        room.build(
            self.s,
            creator,
            EventSpec::state(StateEventType::RoomMember, creator.as_str(), member),
            None,
            None,
        )
    }

    /// Step 3: The power levels: the replacement's, or the preset's (Tchap: its own), with the
    /// request's override on top.
    fn initial_power_levels(
        self,
        room: &mut RoomState,
        creator: &UserId,
        req: &CreateRoomRequest,
        plan: &Plan,
        replacement: &Option<Replacement>,
    ) -> Result<NewPdu> {
        let creators = room.creators();
        let mut users = Map::new();
        if !creators.contains(creator) {
            users.insert(creator.to_string(), json!(100));
        }
        if plan.preset == "trusted_private_chat" {
            for u in &plan.invitees {
                if !creators.contains(u) {
                    users.insert(u.to_string(), json!(100));
                }
            }
        }
        let mut pl = match replacement {
            Some(r) => r.power_levels.clone(),
            None => self
                .policy()
                .creation_power_levels(plan.access_rule, &users)
                .unwrap_or_else(|| default_power_levels(users, &plan.preset)),
        };
        if let Some(o) = &req.power_level_content_override {
            for (k, v) in o {
                pl[k] = v.clone();
            }
        }
        self.policy()
            .check_creation_override(plan.access_rule, &pl)?;
        strip_creators(&mut pl, room);
        room.build(
            self.s,
            creator,
            EventSpec::state(StateEventType::RoomPowerLevels, "", pl),
            None,
            None,
        )
    }

    /// Step 5: Preset state, unless given in initial_state (a replacement room carries its own
    /// state: nothing from presets or defaults): join rules, history visibility, guest access,
    /// then encryption by default (before initial_state, which may set its own).
    fn preset_state(
        self,
        room: &mut RoomState,
        creator: &UserId,
        req: &CreateRoomRequest,
        plan: &Plan,
        copying: bool,
    ) -> Result<Vec<NewPdu>> {
        let preset = plan.preset.as_str();
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
        let policy = self.policy();
        let history = policy
            .creation_history_visibility(plan.access_rule, final_join_rule)
            .unwrap_or("shared");
        let encrypt = policy
            .creation_encryption(plan.access_rule, final_join_rule)
            .unwrap_or(match self.config.encryption_by_default {
                EncryptionByDefault::All => true,
                EncryptionByDefault::Invite => preset != "public_chat",
                EncryptionByDefault::Off => false,
            });
        let mut specs = vec![];
        if !given("m.room.join_rules") {
            specs.push(EventSpec::state(
                StateEventType::RoomJoinRules,
                "",
                json!({ "join_rule": join_rule }),
            ));
        }
        if !given("m.room.history_visibility") {
            specs.push(EventSpec::state(
                StateEventType::RoomHistoryVisibility,
                "",
                json!({ "history_visibility": history }),
            ));
        }
        if preset != "public_chat" && !given("m.room.guest_access") {
            specs.push(EventSpec::state(
                StateEventType::RoomGuestAccess,
                "",
                json!({ "guest_access": "can_join" }),
            ));
        }
        if encrypt && !given("m.room.encryption") {
            specs.push(EventSpec::state(
                StateEventType::RoomEncryption,
                "",
                json!({ "algorithm": "m.megolm.v1.aes-sha2" }),
            ));
        }
        specs
            .into_iter()
            .map(|spec| room.build(self.s, creator, spec, None, None))
            .collect()
    }

    /// Step 6: The request's initial_state (the access rule was sent above).
    fn initial_state(
        self,
        room: &mut RoomState,
        creator: &UserId,
        initial_state: &[InitialState],
        plan: &Plan,
    ) -> Result<Vec<NewPdu>> {
        let mut batch = vec![];
        for s in initial_state {
            if self
                .policy()
                .is_creation_rule_event(plan.access_rule, &s.kind, &s.state_key)
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
                EventSpec::state(s.kind.as_str().into(), &s.state_key, s.content.clone()),
                None,
                None,
            )?);
        }
        Ok(batch)
    }

    /// Upgrade: the old room's state, then its own power levels.
    fn copied_state(
        self,
        room: &mut RoomState,
        creator: &UserId,
        rep: Replacement,
    ) -> Result<Vec<NewPdu>> {
        let mut batch = vec![];
        for (kind, key, content) in rep.state {
            match room.build(
                self.s,
                creator,
                EventSpec::state(kind.as_str().into(), &key, content),
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
            strip_creators(&mut pl, room);
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(StateEventType::RoomPowerLevels, "", pl),
                None,
                None,
            )?);
        }
        Ok(batch)
    }

    /// Step 8: Invites of local users, in the creation batch.
    async fn local_invites(
        self,
        room: &mut RoomState,
        creator: &UserId,
        req: &CreateRoomRequest,
        plan: &Plan,
    ) -> Result<Vec<NewPdu>> {
        let mut batch = vec![];
        for u in plan.invitees.iter().filter(|u| self.is_local(u)) {
            let target = self.db.get_user(u.as_str()).await?;
            let Some(target) = target.filter(|t| t.deactivated == 0) else {
                return Err(Error::not_found(format!("Unknown user {u}")));
            };
            let mut content = json!({ "membership": MembershipState::Invite });
            if req.is_direct {
                content["is_direct"] = json!(true);
            }
            if let Some(d) = target.displayname {
                content["displayname"] = json!(d);
            }
            batch.push(room.build(
                self.s,
                creator,
                EventSpec::state(StateEventType::RoomMember, u.as_str(), content),
                None,
                None,
            )?);
        }
        Ok(batch)
    }

    /// The batch persisted, then the alias and the invites of users of other servers.
    async fn persist_new_room(
        self,
        creator: &UserId,
        room: RoomState,
        batch: Vec<NewPdu>,
        req: &CreateRoomRequest,
        plan: Plan,
    ) -> Result<OwnedRoomId> {
        let room_id = room.room_id.clone();
        let public = plan.public;
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
        if let Some(a) = plan.alias {
            if !self.add_alias(creator, &a, &room_id).await? {
                tracing::warn!(alias = %a, "alias taken while the room was being created");
            }
        }
        // Users of other servers: each invite goes through their server. The room exists
        // whatever they answer; a failed invite is logged (as Synapse does).
        let extra = req.is_direct.then(|| json!({ "is_direct": true }));
        for u in plan.invitees.iter().filter(|u| !self.is_local(u)) {
            if let Err(e) = self
                .set_membership(creator, &room_id, u, MemberOp::Invite, None, extra.clone())
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
