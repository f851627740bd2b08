//! Room access rules (TCHAP.md §3): the `im.vector.room.access_rules` state event and what each
//! rule forbids. [`check`] is a pure function of the configuration, the room state before an
//! event and the event: local events are refused with it before they are stored, events from
//! other servers are rejected with it, so every Palabre server of the federation decides the
//! same for the same event. The forum rules of §4 (encryption and public join rules) are
//! checked at the same points (`room_defaults::check_forum`). Externals are additional
//! creators (room v12) of direct rooms only ([`check_creators`]).

use std::collections::HashSet;

use ruma::{events::StateEventType, RoomVersionId, UserId};
use serde_json::Value;

use super::{room_defaults, Policy};
use crate::services::rooms::{pdu::Pdu, state::State};

/// The state event type carrying the rule.
pub const EVENT_TYPE: &str = "im.vector.room.access_rules";

/// A room's access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Restricted,
    Unrestricted,
    Direct,
}

impl Rule {
    pub fn parse(s: &str) -> Option<Rule> {
        match s {
            "restricted" => Some(Rule::Restricted),
            "unrestricted" => Some(Rule::Unrestricted),
            "direct" => Some(Rule::Direct),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Restricted => "restricted",
            Rule::Unrestricted => "unrestricted",
            Rule::Direct => "direct",
        }
    }
}

fn content(p: &Pdu) -> Value {
    serde_json::from_str(p.content.get()).unwrap_or(Value::Null)
}

fn get<'a>(state: &'a State, kind: &str, key: &str) -> Option<&'a std::sync::Arc<Pdu>> {
    state.get(&(StateEventType::from(kind), key.to_owned()))
}

/// The rule of a rule event's content: absent or empty means `restricted`; None for an unknown
/// value.
fn rule_of(content: &Value) -> Option<Rule> {
    match content.get("rule").and_then(Value::as_str) {
        None | Some("") => Some(Rule::Restricted),
        Some(s) => Rule::parse(s),
    }
}

/// The rule of a room (its state): `restricted` without a rule event.
pub fn room_rule(state: &State) -> Rule {
    get(state, EVENT_TYPE, "")
        .and_then(|p| rule_of(&content(p)))
        .unwrap_or(Rule::Restricted)
}

/// The membership of a user in a state.
fn membership(state: &State, user: &str) -> Option<String> {
    get(state, "m.room.member", user).and_then(|p| p.content_str("membership"))
}

/// The pending third-party (email) invites of a room: tokens of `m.room.third_party_invite`
/// events with content that no member event has used yet.
pub fn pending_email_tokens(state: &State) -> HashSet<String> {
    let mut used = HashSet::new();
    let mut pending = HashSet::new();
    for ((t, k), p) in state {
        if *t == StateEventType::RoomMember {
            if let Some(tok) = content(p)["third_party_invite"]["signed"]["token"].as_str() {
                used.insert(tok.to_owned());
            }
        } else if *t == StateEventType::RoomThirdPartyInvite
            && content(p).as_object().is_some_and(|o| !o.is_empty())
        {
            pending.insert(k.clone());
        }
    }
    pending.retain(|t| !used.contains(t));
    pending
}

/// Members counted by the `direct` rule: joined and invited users.
fn members(state: &State) -> HashSet<String> {
    state
        .iter()
        .filter(|((t, _), p)| *t == StateEventType::RoomMember && p.joined_or_invited())
        .map(|((_, k), _)| k.clone())
        .collect()
}

/// Members plus pending email invites.
pub fn direct_count(state: &State) -> usize {
    members(state).len() + pending_email_tokens(state).len()
}

fn is_external(policy: &Policy, user: &str) -> bool {
    UserId::parse(user).is_ok_and(|u| policy.is_external(&u))
}

/// The `additional_creators` of a room's create event, in room versions that have them (v12:
/// creators are privileged above any power level); empty in older versions, where the key
/// gives nothing.
fn additional_creators(state: &State) -> Vec<String> {
    let Some(create) = get(state, "m.room.create", "") else {
        return vec![];
    };
    let c = content(create);
    let version = c["room_version"].as_str().unwrap_or("1");
    let has_them = RoomVersionId::try_from(version)
        .ok()
        .and_then(|v| v.rules())
        .is_some_and(|r| r.authorization.additional_room_creators);
    if !has_them {
        return vec![];
    }
    c["additional_creators"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Externals are additional creators of direct rooms only: a creator's power is unlimited,
/// `restricted` forbids externals and `unrestricted` gives them power 0 only, while a DM lets
/// its two members have power (invitees of `trusted_private_chat` get 100, and the spec wants
/// them appended to `additional_creators` there). Always Ok with Tchap off.
pub fn check_creators<S: AsRef<str>>(
    policy: &Policy,
    rule: Rule,
    additional: impl IntoIterator<Item = S>,
) -> Result<(), String> {
    if !policy.enabled() || rule == Rule::Direct {
        return Ok(());
    }
    match additional
        .into_iter()
        .find(|u| is_external(policy, u.as_ref()))
    {
        Some(u) => Err(format!(
            "The external user {} cannot be a creator of a room that is not direct (access rule \"{}\")",
            u.as_ref(),
            rule.as_str()
        )),
        None => Ok(()),
    }
}

/// Whether an event is allowed by the room's access rule and the forum rules, given the state
/// before it. `Err` carries the reason (for a 403 or a rejection). Always Ok with Tchap off.
pub fn check(policy: &Policy, state: &State, pdu: &Pdu) -> Result<(), String> {
    if !policy.enabled() {
        return Ok(());
    }
    let Some(key) = pdu.state_key.as_deref() else {
        return Ok(());
    };
    let kind = pdu.kind.to_string();
    let rule = room_rule(state);
    room_defaults::check_forum(state, &kind, &content(pdu))?;
    match kind.as_str() {
        EVENT_TYPE if key.is_empty() => {
            let c = content(pdu);
            check_rule_change(state, &c)?;
            // A room with an external creator is direct, from its first rule on.
            let new = rule_of(&c).unwrap_or(Rule::Restricted);
            check_creators(policy, new, additional_creators(state))
        }
        "m.room.member" => check_member(policy, state, rule, key, &content(pdu)),
        "m.room.third_party_invite" if rule == Rule::Direct => {
            let c = content(pdu);
            let known = get(state, "m.room.third_party_invite", key).is_some();
            if c.as_object().is_some_and(|o| !o.is_empty()) && !known && direct_count(state) >= 2 {
                return Err("A direct room cannot have more than two members".into());
            }
            Ok(())
        }
        "m.room.name" | "m.room.topic" | "m.room.avatar" if rule == Rule::Direct => Err(format!(
            "{kind} cannot be set in a direct room (access rule \"direct\")"
        )),
        "m.room.join_rules" if rule == Rule::Direct => {
            if content(pdu)["join_rule"].as_str() == Some("public") {
                return Err("A direct room cannot be public".into());
            }
            Ok(())
        }
        "m.room.power_levels" if rule == Rule::Unrestricted => {
            check_power_levels(policy, &content(pdu))
        }
        _ => Ok(()),
    }
}

/// Transitions: same → same and `restricted` → `unrestricted`; any rule for a room without one
/// (creation); `direct` only with at most two members.
fn check_rule_change(state: &State, c: &Value) -> Result<(), String> {
    let Some(new) = rule_of(c) else {
        return Err(format!("Unknown access rule {}", c["rule"]));
    };
    if new == Rule::Direct && direct_count(state) > 2 {
        return Err("A room with more than two members cannot become direct".into());
    }
    let Some(prev) = get(state, EVENT_TYPE, "") else {
        return Ok(());
    };
    let prev = rule_of(&content(prev)).unwrap_or(Rule::Restricted);
    match (prev, new) {
        (a, b) if a == b => Ok(()),
        (Rule::Restricted, Rule::Unrestricted) => Ok(()),
        (a, b) => Err(format!(
            "The access rule cannot change from {} to {}",
            a.as_str(),
            b.as_str()
        )),
    }
}

fn check_member(
    policy: &Policy,
    state: &State,
    rule: Rule,
    target: &str,
    c: &Value,
) -> Result<(), String> {
    let m = c["membership"].as_str().unwrap_or_default();
    if !matches!(m, "invite" | "join") {
        return Ok(());
    }
    let current = membership(state, target);
    // The creator's own first join comes before the rule event (room creation).
    let creator = get(state, "m.room.create", "").is_some_and(|c| c.sender.as_str() == target);
    if creator && m == "join" && current.is_none() && get(state, EVENT_TYPE, "").is_none() {
        return Ok(());
    }
    // An external creator gets into no room but a direct one. Checked here too, not only on
    // the rule event: a room joined through another server comes with the state it reports.
    if rule != Rule::Direct
        && is_external(policy, target)
        && additional_creators(state).iter().any(|u| u == target)
    {
        return check_creators(policy, rule, [target]);
    }
    match rule {
        Rule::Restricted if is_external(policy, target) => Err(format!(
            "{target} is an external user and this room is restricted to agents"
        )),
        Rule::Unrestricted
            if m == "join"
                && is_external(policy, target)
                && !matches!(current.as_deref(), Some("invite" | "join")) =>
        {
            Err(format!("{target} is an external user and needs an invite"))
        }
        Rule::Direct => {
            if matches!(current.as_deref(), Some("invite" | "join")) {
                return Ok(());
            }
            // An invite taking up a pending email invite does not add anyone.
            let token = c["third_party_invite"]["signed"]["token"].as_str();
            let count = direct_count(state);
            let takes_pending =
                token.is_some_and(|t| pending_email_tokens(state).contains(t)) && count <= 2;
            if !takes_pending && count >= 2 {
                return Err("A direct room cannot have more than two members".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A power level as the auth rules read it: an integer, or (room versions ≤ 9) a string of
/// one; `None` for anything else.
fn level(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// `unrestricted`: externals keep power 0 and `users_default` stays 0 (a level that is not a
/// number counts as non-zero: it must not slip through as 0).
fn check_power_levels(policy: &Policy, c: &Value) -> Result<(), String> {
    if c.get("users_default").is_some_and(|v| level(v) != Some(0)) {
        return Err("users_default must stay 0 in a room open to externals".into());
    }
    for (user, l) in c["users"].as_object().into_iter().flatten() {
        if is_external(policy, user) && level(l) != Some(0) {
            return Err(format!("The external user {user} cannot be given power"));
        }
    }
    Ok(())
}

impl crate::services::policy::PolicyFace<'_> {
    /// Tchap checks of a `/createRoom` request (TCHAP.md §3, §4, issue item 3): the access
    /// rule asked for (or the default) must match `is_direct`; externals create only direct
    /// rooms with one agent they already share a room with; a published room must pass
    /// [`Self::policy_may_publish_rule`]. Returns the room's rule.
    pub(crate) async fn tchap_create_checks(
        self,
        creator: &UserId,
        req: &crate::services::rooms::requests::CreateRoomRequest,
        invitees: &[ruma::OwnedUserId],
    ) -> crate::Result<Rule> {
        let explicit = req
            .initial_state
            .iter()
            .find(|s| s.kind == EVENT_TYPE && s.state_key.is_empty());
        let rule = match explicit {
            None if req.is_direct => Rule::Direct,
            None => Rule::Restricted,
            Some(s) => {
                let rule = rule_of(&s.content)
                    .ok_or_else(|| crate::Error::invalid_param("Unknown access rule"))?;
                if (rule == Rule::Direct) != req.is_direct {
                    return Err(crate::Error::invalid_param(
                        "The access rule \"direct\" goes with is_direct, and only with it",
                    ));
                }
                rule
            }
        };
        if req.visibility.as_deref() == Some("public") {
            self.policy_may_publish_rule(creator, rule)?;
        }
        if self.policy_rules.is_external(creator) {
            if !req.is_direct || invitees.len() != 1 || !req.invite_3pid.is_empty() {
                return Err(crate::Error::forbidden(
                    "External users can only create a direct chat with one agent",
                ));
            }
            let invitee = &invitees[0];
            if self.policy_rules.is_external(invitee)
                || self
                    .db
                    .still_sharing(creator.as_str(), &[invitee.to_string()])
                    .await?
                    .is_empty()
            {
                return Err(crate::Error::forbidden(
                    "External users can only start a direct chat with an agent they already share a room with",
                ));
            }
        }
        Ok(rule)
    }

    /// Whether a user may publish a room in the directory: not an external, and only a
    /// `restricted` room (TCHAP.md §3, §4).
    pub fn policy_may_publish(
        self,
        user: &UserId,
        room: &crate::services::rooms::state::RoomState,
    ) -> crate::Result<()> {
        self.policy_may_publish_rule(user, room_rule(&room.state))
    }

    /// [`Self::policy_may_publish`] for a room whose rule is `rule`.
    fn policy_may_publish_rule(self, user: &UserId, rule: Rule) -> crate::Result<()> {
        if !self.policy_rules.enabled() {
            return Ok(());
        }
        if self.policy_rules.is_external(user) {
            return Err(crate::Error::forbidden(
                "External users cannot publish rooms",
            ));
        }
        if rule != Rule::Restricted {
            return Err(crate::Error::forbidden(
                "Only rooms with the access rule \"restricted\" can be published",
            ));
        }
        Ok(())
    }

    /// A local rule change: a room published in the directory stays `restricted` (checked here,
    /// at the time of the change; the rest of the rule is [`check`]).
    pub async fn policy_rule_change_allowed(
        self,
        room_id: &ruma::RoomId,
        content: &Value,
    ) -> crate::Result<()> {
        if !self.policy_rules.enabled() || rule_of(content) == Some(Rule::Restricted) {
            return Ok(());
        }
        if self.db.room_version(room_id.as_str()).await?.is_some()
            && self.db.room_is_public(room_id.as_str()).await?
        {
            return Err(crate::Error::forbidden(
                "A room published in the directory must keep the access rule \"restricted\"",
            ));
        }
        Ok(())
    }
}

impl crate::services::policy::PolicyFace<'_> {
    /// The Tchap state of a server notices room: without a rule a Tchap room is `restricted`,
    /// where an external cannot be invited, and every user of an externals server needs their
    /// notices room too. Nothing with Tchap off.
    pub fn notices_room_state(self) -> Option<(String, String, Value)> {
        self.policy_rules.enabled().then(|| {
            (
                EVENT_TYPE.to_owned(),
                String::new(),
                serde_json::json!({ "rule": "unrestricted" }),
            )
        })
    }

    /// Room upgrade: the replacement takes the old room's rule; externals are additional
    /// creators of direct rooms only.
    pub fn check_upgrade_creators(
        self,
        old_state: &State,
        additional_creators: &[ruma::OwnedUserId],
    ) -> crate::Result<()> {
        let rule = room_rule(old_state);
        check_creators(&self.policy_rules, rule, additional_creators)
            .map_err(crate::Error::forbidden)
    }
}

#[cfg(test)]
mod tests {
    use ruma::events::room::member::MembershipState;
    use std::sync::Arc;

    use ruma::events::StateEventType;
    use serde_json::json;

    use super::*;
    use crate::config::TchapConfig;

    fn pdu(n: usize, kind: &str, key: &str, sender: &str, content: Value) -> Arc<Pdu> {
        let json = json!({
            "type": kind, "state_key": key, "sender": sender, "content": content,
            "room_id": "!r:a.example", "origin_server_ts": 1, "depth": n,
            "prev_events": [], "auth_events": [],
        });
        Pdu::parse(&format!("$e{n}"), &json.to_string()).unwrap()
    }

    fn policy() -> Policy {
        let cfg = TchapConfig {
            externals_servers: vec!["ext.example".into()],
            ..Default::default()
        };
        Policy::new("a.example", Some(&cfg)).unwrap()
    }

    fn room(rule: &str, members: &[(&str, &str)]) -> State {
        let mut s = State::new();
        let mut put = |p: Arc<Pdu>| {
            s.insert(
                (
                    StateEventType::from(p.kind.to_string().as_str()),
                    p.state_key.clone().unwrap(),
                ),
                p,
            );
        };
        put(pdu(0, "m.room.create", "", "@c:a.example", json!({})));
        put(pdu(
            1,
            EVENT_TYPE,
            "",
            "@c:a.example",
            json!({ "rule": rule }),
        ));
        for (i, (u, m)) in members.iter().enumerate() {
            put(pdu(
                2 + i,
                "m.room.member",
                u,
                u,
                json!({ "membership": m }),
            ));
        }
        s
    }

    #[test]
    fn direct_counts_pending_email_invites() {
        let p = policy();
        let mut s = room("direct", &[("@c:a.example", "join")]);
        let tpi = pdu(
            9,
            "m.room.third_party_invite",
            "tok",
            "@c:a.example",
            json!({ "display_name": "x" }),
        );
        assert!(check(&p, &s, &tpi).is_ok());
        s.insert((StateEventType::RoomThirdPartyInvite, "tok".into()), tpi);
        // Two slots taken: a third person is refused, the invite taking the token is not.
        let third = pdu(
            10,
            "m.room.member",
            "@d:a.example",
            "@c:a.example",
            json!({ "membership": MembershipState::Invite }),
        );
        assert!(check(&p, &s, &third).is_err());
        let taking = pdu(
            11,
            "m.room.member",
            "@d:a.example",
            "@c:a.example",
            json!({
                "membership": "invite",
                "third_party_invite": { "signed": { "mxid": "@d:a.example", "token": "tok" } },
            }),
        );
        assert!(check(&p, &s, &taking).is_ok());
        let name = pdu(
            12,
            "m.room.name",
            "",
            "@c:a.example",
            json!({ "name": "n" }),
        );
        assert!(check(&p, &s, &name).is_err());
    }

    #[test]
    fn transitions_and_externals() {
        let p = policy();
        let s = room("restricted", &[("@c:a.example", "join")]);
        let to = |r: &str| pdu(20, EVENT_TYPE, "", "@c:a.example", json!({ "rule": r }));
        assert!(check(&p, &s, &to("unrestricted")).is_ok());
        assert!(check(&p, &s, &to("restricted")).is_ok());
        assert!(check(&p, &s, &to("direct")).is_err()); // only towards unrestricted
        let u = room("unrestricted", &[("@c:a.example", "join")]);
        assert!(check(&p, &u, &to("restricted")).is_err());
        let join = pdu(
            21,
            "m.room.member",
            "@x:ext.example",
            "@x:ext.example",
            json!({ "membership": MembershipState::Join }),
        );
        assert!(check(&p, &s, &join).is_err());
        assert!(check(&p, &u, &join).is_err(), "no invite");
        let invited = room(
            "unrestricted",
            &[("@c:a.example", "join"), ("@x:ext.example", "invite")],
        );
        assert!(check(&p, &invited, &join).is_ok());
        let pl = pdu(
            22,
            "m.room.power_levels",
            "",
            "@c:a.example",
            json!({ "users": { "@x:ext.example": 10 } }),
        );
        assert!(check(&p, &u, &pl).is_err());
        // Tchap off: everything goes.
        let off = Policy::new("a.example", None).unwrap();
        assert!(check(&off, &s, &join).is_ok());
    }

    #[test]
    fn externals_are_creators_of_direct_rooms_only() {
        let p = policy();
        // A state holding only a create event naming additional creators.
        let created = |version: &str| {
            let mut s = State::new();
            let create = pdu(
                0,
                "m.room.create",
                "",
                "@c:a.example",
                json!({ "room_version": version, "additional_creators": ["@x:ext.example", "@d:a.example"] }),
            );
            s.insert((StateEventType::RoomCreate, String::new()), create);
            s
        };
        let to = |r: &str| pdu(20, EVENT_TYPE, "", "@c:a.example", json!({ "rule": r }));
        let v12 = created("12");
        assert!(check(&p, &v12, &to("restricted")).is_err());
        assert!(check(&p, &v12, &to("unrestricted")).is_err());
        assert!(check(&p, &v12, &to("direct")).is_ok());
        // Before v12 the key gives nothing and is not looked at.
        assert!(check(&p, &created("11"), &to("restricted")).is_ok());
        // A room whose rule came with its state: the external creator is never let in, other
        // externals are (by invite).
        let mut open = v12.clone();
        open.insert(
            (StateEventType::from(EVENT_TYPE), String::new()),
            to("unrestricted"),
        );
        let invite = |target: &str| {
            pdu(
                21,
                "m.room.member",
                target,
                "@c:a.example",
                json!({ "membership": MembershipState::Invite }),
            )
        };
        assert!(check(&p, &open, &invite("@x:ext.example")).is_err());
        assert!(check(&p, &open, &invite("@y:ext.example")).is_ok());
        assert!(check(&p, &open, &invite("@d:a.example")).is_ok());
        let mut dm = v12.clone();
        dm.insert(
            (StateEventType::from(EVENT_TYPE), String::new()),
            to("direct"),
        );
        assert!(check(&p, &dm, &invite("@x:ext.example")).is_ok());
        // The pre-checks of createRoom and upgrade.
        assert!(check_creators(&p, Rule::Unrestricted, ["@x:ext.example"]).is_err());
        assert!(check_creators(&p, Rule::Restricted, ["@d:a.example"]).is_ok());
        assert!(check_creators(&p, Rule::Direct, ["@x:ext.example"]).is_ok());
        let off = Policy::new("a.example", None).unwrap();
        assert!(check(&off, &v12, &to("restricted")).is_ok());
    }
}
