//! Joining rooms across servers (spec: Joining Rooms): `make_join` / `send_join` v2 served to
//! other servers, and the same dance as the joining side for local users.

use crate::services::federation::FederationFace;
use crate::services::rooms::{EventWrite, NewRoom, Placement};
use ruma::events::room::member::MembershipState;
use std::{collections::HashMap, sync::Arc};

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res, CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, OwnedServerName,
    RoomId, RoomVersionId, ServerName, UserId,
};
use serde_json::{json, Value};

use super::{
    client::{owned, raw_json},
    leave::supported_versions,
    pdu::CheckedPdu,
    sender::outgoing_pdu,
};
use crate::services::policy::{access_rules, Policy};
use crate::{
    services::rooms::{
        judge_batch,
        pdu::Pdu,
        version::{self},
        GroupWrite, NewPdu, Outcome, RoomState, StateKey,
    },
    store::events::NewEvent,
    util, Error, Result,
};
use ruma::api::federation::membership::{create_join_event, prepare_join_event};

impl FederationFace<'_> {
    /// `GET /make_join/{roomId}/{userId}`: a join event template on top of our current state.
    pub async fn make_join(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        versions: &[String],
    ) -> Result<Value> {
        self.admin().check_room_not_blocked(room_id).await?;
        self.make_membership(origin, room_id, user, "join", Some(versions))
            .await
    }

    /// `PUT /v2/send_join/{roomId}/{eventId}`: takes the signed join, answers with the room's
    /// state and auth chain, and passes the join on to the room's other servers.
    pub async fn send_join(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        event: &Value,
        omit_members: bool,
    ) -> Result<Value> {
        self.admin().check_room_not_blocked(room_id).await?;
        let rules = self.rooms().room_rules(room_id.as_str()).await?;
        self.check_acl(room_id, origin).await?;
        let checked = self.check_pdu(event, &rules).await?;
        if checked.event_id.as_str() != event_id {
            return Err(Error::bad_json("The event id does not match the event"));
        }
        let pdu = Pdu::parse(checked.event_id.as_str(), &checked.json).map_err(Error::bad_json)?;
        if pdu.kind != TimelineEventType::RoomMember
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
            || pdu.membership() != Some(MembershipState::Join)
            || pdu.sender.server_name() != origin
        {
            return Err(Error::bad_json(
                "Not a join of a user of the requesting server",
            ));
        }
        // The state the joiner gets: the current state before the join.
        let state_rows = self
            .db
            .current_state_events(&[room_id.to_string()], None)
            .await?;
        let mut outcome = self
            .rooms()
            .accept_remote_pdus(room_id, vec![checked])
            .await?;
        match outcome.pop().map(|(_, o)| o) {
            Some(Outcome::Accepted) | Some(Outcome::AlreadyKnown) => {}
            Some(Outcome::Rejected(e)) => {
                return Err(Error::forbidden(format!("Join refused: {e}")))
            }
            Some(Outcome::SoftFailed) => return Err(Error::forbidden("Join refused")),
            Some(Outcome::MissingPrevs(_)) | None => {
                return Err(Error::bad_json(
                    "The join does not follow events known here",
                ))
            }
        }
        let guard = self.rooms().lock_room(room_id).await?;
        let servers: Vec<String> = guard
            .as_ref()
            .map(|r| {
                let mut s = super::sender::room_servers(r, &self.server_name);
                s.push(self.server_name.clone());
                s.into_iter().map(|s| s.to_string()).collect()
            })
            .unwrap_or_default();
        if let Some(room) = guard.as_ref() {
            self.send_to_room_servers(room, &[event_id.to_owned()], Some(origin))
                .await?;
        }
        drop(guard);
        // Partial state (MSC3706): members omitted, except the "heroes" a client would name an
        // unnamed room after (up to 5 joined or invited members, as the spec asks).
        let named = state_rows
            .iter()
            .any(|r| r.kind == "m.room.name" || r.kind == "m.room.canonical_alias");
        let heroes: Vec<&str> = if omit_members && !named {
            state_rows
                .iter()
                .filter(|r| {
                    r.kind == "m.room.member" && r.state_key.as_deref() != Some(pdu.sender.as_str())
                })
                .filter(|r| {
                    serde_json::from_str::<Value>(&r.json).is_ok_and(|v| {
                        matches!(v["content"]["membership"].as_str(), Some("join" | "invite"))
                    })
                })
                .take(5)
                .map(|r| r.event_id.as_str())
                .collect()
        } else {
            vec![]
        };
        let state: Vec<_> = state_rows
            .iter()
            .filter(|r| {
                !(omit_members && r.kind == "m.room.member")
                    || heroes.contains(&r.event_id.as_str())
            })
            .collect();
        let ids: Vec<String> = state.iter().map(|r| r.event_id.clone()).collect();
        let chain = self.db.auth_chain(&ids).await?;
        Ok(json!({
            "origin": self.server_name.as_str(),
            "state": state.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
            "auth_chain": chain.iter().map(|r| outgoing_pdu(&r.json)).collect::<Vec<_>>(),
            "event": event,
            "members_omitted": omit_members,
            "servers_in_room": servers,
        }))
    }

    /// Joins a room this server is not in, through one of `servers`.
    pub async fn join_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        content: Value,
    ) -> Result<OwnedRoomId> {
        let mut last = Error::not_found("No server could help joining the room");
        for server in servers.iter().filter(|s| **s != self.server_name) {
            match self.join_via(server, user, room_id, content.clone()).await {
                Ok(()) => return Ok(room_id.to_owned()),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e.message, "remote join failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn join_via(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
        content: Value,
    ) -> Result<()> {
        let (version, rules, mut obj) = self.make_join_via(server, user, room_id).await?;
        let (event_id, event) = self.sign_join(&mut obj, user, content, &rules)?;
        let send = create_join_event::v2::Request::new(
            room_id.to_owned(),
            owned(event_id.as_str())?,
            raw_json(&event)?,
        );
        let resp = self.call(server, send).await?;
        // The resident server may have signed the event too (restricted joins).
        let join_json = resp
            .get("event")
            .filter(|e| e.is_object())
            .unwrap_or(&event)
            .clone();
        let join = self.check_pdu(&join_json, &rules).await?;
        if join.event_id.as_str() != event_id {
            return Err(Error::bad_json(
                "The resident server changed the join event",
            ));
        }
        let (checked, state_ids) = self.check_send_join_events(&resp, &rules).await;
        let (by_id, state, checked) = judge_join_state(&rules, room_id, checked, &state_ids)?;
        let create = state
            .get(&(StateEventType::RoomCreate, String::new()))
            .cloned()
            .ok_or_else(|| Error::bad_json("The room state has no create event"))?;
        // The join itself, against that state.
        let join_pdu = Pdu::parse(join.event_id.as_str(), &join.json).map_err(Error::bad_json)?;
        self.check_own_join(server, user, room_id, &rules, &by_id, &state, &join_pdu)?;
        self.store_remote_join(
            room_id,
            version,
            rules,
            create.sender.as_str(),
            checked,
            state,
            join_pdu,
            join.json,
        )
        .await
    }

    /// Joining, step 1: `make_join` on the resident server: the room version (supported here)
    /// and the join event template.
    async fn make_join_via(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<(RoomVersionId, RoomVersionRules, CanonicalJsonObject)> {
        let mut make = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        make.ver = supported_versions();
        let resp = self.call(server, make).await?;
        let ver = resp["room_version"].as_str().unwrap_or("1");
        let version = RoomVersionId::try_from(ver)
            .map_err(|_| Error::unsupported_room_version("Unknown room version"))?;
        let rules = version::supported(&version)
            .ok_or_else(|| Error::unsupported_room_version("Room version not supported here"))?;
        let obj: CanonicalJsonObject = match CanonicalJsonValue::try_from(resp["event"].clone()) {
            Ok(CanonicalJsonValue::Object(o)) => o,
            _ => return Err(Error::bad_json("Bad make_join template")),
        };
        Ok((version, rules, obj))
    }

    /// Joining, step 2: the join event from the template, with our content (profile), our
    /// timestamp and our signature. Returns its event id and JSON.
    fn sign_join(
        self,
        obj: &mut CanonicalJsonObject,
        user: &UserId,
        content: Value,
        rules: &RoomVersionRules,
    ) -> Result<(String, Value)> {
        let mut c = content;
        c["membership"] = json!(MembershipState::Join);
        super::leave::fill_member_template(obj, user, c)?;
        let event_id = format!("${}", self.rooms().sign_pdu(obj, rules)?);
        let event = serde_json::to_value(&*obj)?;
        Ok((event_id, event))
    }

    /// Joining, step 3: every state and auth chain event of the `send_join` answer through
    /// the format, signature and hash checks (what fails is left out). Returns the events by
    /// id and the ids of the state's.
    async fn check_send_join_events(
        self,
        resp: &Value,
        rules: &RoomVersionRules,
    ) -> (
        HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)>,
        Vec<OwnedEventId>,
    ) {
        let mut checked: HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)> = HashMap::new();
        let mut state_ids: Vec<OwnedEventId> = vec![];
        let lists = [("auth_chain", false), ("state", true)];
        for (field, is_state) in lists {
            for v in resp[field].as_array().into_iter().flatten() {
                match self.check_pdu(v, rules).await {
                    Ok(c) => {
                        if is_state {
                            state_ids.push(c.event_id.clone());
                        }
                        if let Ok(p) = Pdu::parse(c.event_id.as_str(), &c.json) {
                            checked.insert(c.event_id.clone(), (p, c));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.message, "event from send_join failed its checks")
                    }
                }
            }
        }
        (checked, state_ids)
    }

    /// Joining, step 5: the join itself must be allowed by its auth events and the room state,
    /// and by the Tchap access rules, as for every event received: this server's user does not
    /// join a room its rules refuse. The resident server already took the join: leave again
    /// there (best effort), so that it does not count the user as a member.
    #[allow(clippy::too_many_arguments)]
    fn check_own_join(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        by_id: &HashMap<OwnedEventId, Arc<Pdu>>,
        state: &HashMap<StateKey, Arc<Pdu>>,
        join_pdu: &Arc<Pdu>,
    ) -> Result<()> {
        state_res::check_state_independent_auth_rules(&rules.authorization, &**join_pdu, |id| {
            by_id.get(id).cloned()
        })
        .map_err(|e| Error::forbidden(format!("The join is not allowed: {e}")))?;
        state_res::check_state_dependent_auth_rules(&rules.authorization, &**join_pdu, |t, k| {
            state.get(&(t.clone(), k.to_owned())).cloned()
        })
        .map_err(|e| Error::forbidden(format!("The join is not allowed: {e}")))?;
        if let Err(e) = access_rules::check(&self.policy_rules, state, join_pdu) {
            if let Some(srv) = self.me.upgrade() {
                let (server, user, room) = (server.to_owned(), user.to_owned(), room_id.to_owned());
                tokio::spawn(async move {
                    let content = json!({ "membership": MembershipState::Leave });
                    if let Err(e) = srv
                        .federation()
                        .send_leave_via(&server, &user, &room, content)
                        .await
                    {
                        tracing::info!(%room, error = %e.message, "could not undo a refused remote join");
                    }
                });
            }
            return Err(Error::forbidden(e));
        }
        Ok(())
    }

    /// Stores a room joined through another server: its state and auth chain as outliers, the
    /// join as the first timeline event, and the current state and memberships.
    #[allow(clippy::too_many_arguments)]
    async fn store_remote_join(
        self,
        room_id: &RoomId,
        version: RoomVersionId,
        rules: ruma::room_version_rules::RoomVersionRules,
        creator: &str,
        outliers: HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)>,
        state: HashMap<StateKey, Arc<Pdu>>,
        join: Arc<Pdu>,
        join_json: String,
    ) -> Result<()> {
        let mut guard = self.rooms().lock_new_room(room_id).await;
        if guard.is_some() || self.db.room_version(room_id.as_str()).await?.is_some() {
            // Known meanwhile (another user joined): join the ordinary way.
            return Err(Error::conflict(
                "The room became known here; retry the join",
            ));
        }
        let mut room = self.joined_room(version, rules, room_id, state);
        // State after the join: a full snapshot.
        let group = room.push_state(self.s, &join);
        let group = GroupWrite {
            prev: None,
            chain_len: 0,
            entries: room.snapshot(),
            ..group
        };
        room.chain_len = 0;
        room.extremities = vec![join.event_id.clone()];
        room.depth = join.depth;
        self.store_join_outliers(room_id, &room, creator, &outliers, &join.event_id)
            .await?;
        let new = NewPdu {
            state_group: group.id,
            pdu: join.clone(),
            json: join_json,
            group_write: Some(group),
            device: None,
            txn: None,
            txn_key: None,
            soft_failed: false,
        };
        *guard = Some(room);
        // The join is the room's first timeline event here; persisted like any event (it was
        // already sent to the room by the resident server).
        let _ = self.rooms().persist(&mut guard, vec![new], None).await?;
        Ok(())
    }

    /// The room as the send_join answer describes it: its state, and the local users in it.
    fn joined_room(
        self,
        version: RoomVersionId,
        rules: ruma::room_version_rules::RoomVersionRules,
        room_id: &RoomId,
        state: HashMap<StateKey, Arc<Pdu>>,
    ) -> RoomState {
        let mut room = RoomState::new_room(version, rules, room_id.to_owned());
        room.state = state;
        for ((t, k), p) in &room.state {
            if *t != StateEventType::RoomMember {
                continue;
            }
            let Ok(u) = UserId::parse(k.as_str()) else {
                continue;
            };
            if self.is_local(&u) && p.joined_or_invited() {
                room.local_members.insert(u);
            }
        }
        room
    }

    /// Stores the state and auth chain of the send_join answer (all but the join itself) as
    /// outliers with stream positions, with the room's row, its current state and memberships.
    async fn store_join_outliers(
        self,
        room_id: &RoomId,
        room: &RoomState,
        creator: &str,
        outliers: &HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)>,
        join_id: &OwnedEventId,
    ) -> Result<()> {
        let out: Vec<(&OwnedEventId, &(Arc<Pdu>, CheckedPdu))> =
            outliers.iter().filter(|(id, _)| *id != join_id).collect();
        let ids = self.take_positions(|s| &s.events_stream, out.len()).await?;
        let strings: Vec<crate::services::rooms::pdu::PduStrings> =
            out.iter().map(|(_, (p, _))| p.strings()).collect();
        let events: Vec<NewEvent> = out
            .iter()
            .zip(&ids)
            .zip(&strings)
            .map(|(((_, (p, c)), stream), s)| NewEvent {
                rejected: p.rejected,
                ..p.new_event(s, room_id.as_str(), &c.json, *stream, 0, true)
            })
            .collect();
        let state_set = current_state_rows(room, &events);
        let members: Vec<(&str, String, &str, i64)> = events
            .iter()
            .filter(|e| e.kind == "m.room.member")
            .filter(|e| state_set.iter().any(|r| r.2 == e.event_id))
            .filter_map(|e| {
                let m = room
                    .state
                    .get(&(StateEventType::RoomMember, e.state_key?.to_owned()))?
                    .content_str("membership")?;
                Some((e.state_key?, m, e.event_id, e.stream_ordering))
            })
            .collect();
        let memberships: Vec<(&str, &str, &str, i64)> = members
            .iter()
            .map(|(u, m, e, s)| (*u, m.as_str(), *e, *s))
            .collect();
        let write = EventWrite {
            placement: Placement::Outlier,
            new_room: Some(NewRoom {
                version: room.version.as_str(),
                creator,
                public: false,
            }),
            events,
            state_set,
            memberships,
            ..Default::default()
        };
        self.rooms()
            .write_events(room_id.as_str(), ids, write, vec![])
            .await?;
        Ok(())
    }
}

/// The current-state rows (type, state key, event id, stream) of those events that are the
/// room's state: everything but the join, whose own row comes with it.
fn current_state_rows<'a>(
    room: &RoomState,
    events: &[NewEvent<'a>],
) -> Vec<(&'a str, &'a str, &'a str, i64)> {
    events
        .iter()
        .filter(|e| e.state_key.is_some())
        .filter(|e| {
            room.state
                .get(&(
                    StateEventType::from(e.kind),
                    e.state_key.unwrap_or_default().to_owned(),
                ))
                .is_some_and(|p| p.event_id.as_str() == e.event_id)
        })
        .map(|e| {
            (
                e.kind,
                e.state_key.unwrap_or_default(),
                e.event_id,
                e.stream_ordering,
            )
        })
        .collect()
}

impl RoomState {
    /// An unsigned event template on top of the current state (make_join and friends).
    pub fn template(
        &self,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<Value> {
        let content_raw = serde_json::value::to_raw_value(&content)?;
        let auth_types = state_res::auth_types_for_event(
            &TimelineEventType::from(kind),
            sender,
            state_key,
            &content_raw,
            &self.rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let mut auth: Vec<String> = auth_types
            .iter()
            .filter_map(|k| self.state.get(k))
            .map(|p| p.event_id.to_string())
            .collect();
        auth.sort();
        auth.dedup();
        let mut t = json!({
            "type": kind,
            "room_id": self.room_id,
            "sender": sender,
            "content": content,
            "auth_events": auth,
            "prev_events": self.extremities.iter().take(10).collect::<Vec<_>>(),
            "depth": self.depth + 1,
            "origin_server_ts": util::now_ms(),
        });
        if let Some(k) = state_key {
            t["state_key"] = json!(k);
        }
        Ok(t)
    }

    /// Whether an event built from a template would pass the auth rules (and the Tchap access
    /// rules) on the current state; `what` words the refusal ("You may not leave"...).
    pub fn check_template_as(&self, policy: &Policy, template: &Value, what: &str) -> Result<()> {
        let mut t = template.clone();
        t["hashes"] = json!({ "sha256": "" });
        t["signatures"] = json!({});
        let pdu = Pdu::parse("$template", &t.to_string()).map_err(Error::bad_json)?;
        state_res::check_state_dependent_auth_rules(&self.rules.authorization, &*pdu, |k, s| {
            self.state.get(&(k.clone(), s.to_owned())).cloned()
        })
        .and_then(|_| access_rules::check(policy, &self.state, &pdu))
        .map_err(|e| Error::forbidden(format!("{what}: {e}")))
    }
}

/// The events of a `send_join` answer, judged: by id (those judged so far), the room state
/// they make, and every event of the room with a verdict (to store as outliers).
type JudgedJoin = (
    HashMap<OwnedEventId, Arc<Pdu>>,
    HashMap<StateKey, Arc<Pdu>>,
    HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)>,
);

/// Joining, step 4: every event of the room judged by its auth events, each after those it
/// cites: the rejected ones are kept flagged (what cites them is rejected too), events of
/// other rooms and events citing unknown ones are left out. The state is made of the accepted
/// state events.
fn judge_join_state(
    rules: &RoomVersionRules,
    room_id: &RoomId,
    checked: HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)>,
    state_ids: &[OwnedEventId],
) -> Result<JudgedJoin> {
    // The room's create event (in v12 the room id is its hash and it has no room_id).
    let create_pdu = checked
        .values()
        .map(|(p, _)| p)
        .find(|p| p.kind == TimelineEventType::RoomCreate && p.state_key.as_deref() == Some(""))
        .cloned()
        .ok_or_else(|| Error::bad_json("The room state has no create event"))?;
    let in_room = |p: &Pdu| -> bool {
        match p.room_id.as_deref() {
            Some(r) => r == room_id,
            None => {
                rules.authorization.room_create_event_id_as_room_id
                    && p.kind == TimelineEventType::RoomCreate
                    && room_id.as_str().strip_prefix('!') == p.event_id.as_str().strip_prefix('$')
            }
        }
    };
    let batch: Vec<(Arc<Pdu>, CheckedPdu)> =
        checked.into_values().filter(|(p, _)| in_room(p)).collect();
    let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
    let judged = judge_batch(rules, batch, &mut by_id, Some(&create_pdu));
    let mut state: HashMap<StateKey, Arc<Pdu>> = HashMap::new();
    let accepted: HashMap<&OwnedEventId, &Arc<Pdu>> = judged
        .accepted
        .iter()
        .map(|(p, _)| (&p.event_id, p))
        .collect();
    for id in state_ids {
        let Some(p) = accepted.get(id) else {
            continue;
        };
        let Some(k) = p.state_key.clone() else {
            continue;
        };
        state.insert(
            (StateEventType::from(p.kind.to_string().as_str()), k),
            (*p).clone(),
        );
    }
    let checked: HashMap<OwnedEventId, (Arc<Pdu>, CheckedPdu)> = judged
        .accepted
        .into_iter()
        .chain(judged.rejected)
        .map(|(p, c)| (p.event_id.clone(), (p, c)))
        .collect();
    Ok((by_id, state, checked))
}
