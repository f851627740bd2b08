//! Spaces: the room hierarchy below a space (`GET /rooms/{id}/hierarchy`), over local rooms.
//!
//! The walk is depth-first (spec and Synapse): a space's children, in the spec's order, are
//! visited before its siblings. Rooms are summarised in batches: when the walk meets a room it
//! has not loaded, it loads that room and the next unloaded rooms waiting on the stack (a
//! space's children are pushed together, so a batch is typically a whole sibling group) with
//! two queries whatever the batch size. Pages continue from a saved walk (stack + rooms already
//! seen), so a later page never repeats a room.

use crate::services::rooms::RoomsFace;
use std::collections::{HashMap, HashSet};

use ruma::{room_version_rules::RoomVersionRules, RoomId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::services::rooms::{client_event::Format, version};
use crate::{store::spaces::HierarchyPage, util, Error, Result};

/// Most rooms per page (Synapse's cap), also the default.
const MAX_ROOMS: usize = 50;
/// How long a pagination token stays valid.
const PAGE_VALIDITY_MS: i64 = 5 * 60 * 1000;
/// The state read to summarise a room.
const SUMMARY_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
    "m.space.child",
];

pub struct HierarchyRequest {
    pub suggested_only: bool,
    pub max_depth: Option<i64>,
    pub limit: Option<i64>,
    pub from: Option<String>,
}

/// The saved state of a walk between pages.
#[derive(Serialize, Deserialize, Default)]
struct Walk {
    /// Rooms still to visit with their depth; the next one is last.
    stack: Vec<(String, i64)>,
    /// Rooms already visited (returned or not).
    seen: Vec<String>,
}

/// What the walk knows of a local room.
struct RoomInfo {
    rules: Option<RoomVersionRules>,
    summary: Map<String, Value>,
    join_rule: String,
    /// Rooms whose members may join (restricted join rules).
    allow: Vec<String>,
    world_readable: bool,
    is_space: bool,
    /// Stripped `m.space.child` events with a valid `via`, in the spec's order, and whether
    /// each is suggested.
    children: Vec<(Value, bool)>,
}

impl RoomInfo {
    /// Whether the user may see this room in a hierarchy: a member (joined or invited), or the
    /// room is world-readable, or the user could join or knock (public, knock, or a restricted
    /// room whose allowed rooms they are joined to).
    fn visible_to(&self, membership: Option<&str>, joined: &HashSet<&str>) -> bool {
        if matches!(membership, Some("join" | "invite")) || self.world_readable {
            return true;
        }
        let Some(rules) = &self.rules else {
            return false;
        };
        let auth = &rules.authorization;
        match self.join_rule.as_str() {
            "public" => true,
            "knock" => auth.knocking,
            "knock_restricted" => auth.knock_restricted_join_rule,
            "restricted" if auth.restricted_join_rule => {
                self.allow.iter().any(|r| joined.contains(r.as_str()))
            }
            _ => false,
        }
    }

    fn to_json(&self, suggested_only: bool) -> Value {
        let mut out = self.summary.clone();
        let children: Vec<Value> = if self.is_space {
            self.children
                .iter()
                .filter(|(_, suggested)| !suggested_only || *suggested)
                .map(|(ev, _)| ev.clone())
                .collect()
        } else {
            vec![]
        };
        out.insert("children_state".into(), Value::Array(children));
        Value::Object(out)
    }

    /// Room ids of the children the walk descends into.
    fn child_ids(&self, suggested_only: bool) -> Vec<String> {
        if !self.is_space {
            return vec![];
        }
        self.children
            .iter()
            .filter(|(_, suggested)| !suggested_only || *suggested)
            .filter_map(|(ev, _)| ev["state_key"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The `im.nheko.summary.*` names of the unstable summary path, beside the stable ones.
fn unstable_names(out: &mut Map<String, Value>) {
    for key in ["room_version", "encryption"] {
        if let Some(v) = out.get(key).cloned() {
            out.insert(format!("im.nheko.summary.{key}"), v);
        }
    }
}

/// A valid `order` of a space child: at most 50 printable ASCII characters.
fn child_order(content: &Value) -> Option<&str> {
    content["order"]
        .as_str()
        .filter(|o| o.len() <= 50 && o.bytes().all(|b| (0x20..=0x7e).contains(&b)))
}

/// A child is only a child while its `via` is a non-empty list of strings.
fn has_via(content: &Value) -> bool {
    content["via"]
        .as_array()
        .is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string))
}

impl RoomsFace<'_> {
    pub async fn room_hierarchy(
        self,
        user: &UserId,
        root: &RoomId,
        req: HierarchyRequest,
    ) -> Result<Value> {
        self.hierarchy_as(user, root, req, false).await
    }

    /// The hierarchy as the server sees it (the admin API): every room known here is shown,
    /// whatever `admin`'s memberships; the pages are kept under `admin`'s name.
    pub async fn server_room_hierarchy(
        self,
        admin: &UserId,
        root: &RoomId,
        req: HierarchyRequest,
    ) -> Result<Value> {
        self.hierarchy_as(admin, root, req, true).await
    }

    async fn hierarchy_as(
        self,
        user: &UserId,
        root: &RoomId,
        req: HierarchyRequest,
        see_all: bool,
    ) -> Result<Value> {
        let limit = hierarchy_limit(&req)?;
        if !see_all {
            self.ratelimit
                .check("hierarchy", user.as_str(), self.config.rate_limits.message)?;
        }
        // The user's memberships, once: who they are to each room, and the rooms they are joined
        // to (restricted rooms).
        let memberships: HashMap<String, String> = self
            .db
            .user_memberships(user.as_str())
            .await?
            .into_iter()
            .map(|m| (m.room_id, m.membership))
            .collect();
        let joined: HashSet<&str> = memberships
            .iter()
            .filter(|(_, m)| *m == "join")
            .map(|(r, _)| r.as_str())
            .collect();
        let membership = |room: &str| memberships.get(room).map(String::as_str);

        let mut infos: HashMap<String, Option<RoomInfo>> = self
            .load_room_infos(&[root.to_string()])
            .await?
            .into_iter()
            .collect();
        match infos.get(root.as_str()) {
            Some(Some(info)) if see_all || info.visible_to(membership(root.as_str()), &joined) => {}
            Some(Some(_)) => {
                return Err(Error::forbidden(
                    "You cannot see this room: not a member and it cannot be previewed",
                ))
            }
            _ => return Err(Error::not_found("Unknown room")),
        }

        let walk = self.hierarchy_walk(user, root, &req).await?;
        let mut stack = walk.stack;
        let mut seen: HashSet<String> = walk.seen.into_iter().collect();
        let mut rooms = vec![];
        while rooms.len() < limit {
            let Some((room_id, depth)) = stack.pop() else {
                break;
            };
            if !seen.insert(room_id.clone()) {
                continue;
            }
            if !infos.contains_key(&room_id) {
                // This room and the next unloaded ones on the stack, up to what the page can
                // still take.
                let want = limit - rooms.len();
                let mut batch = vec![room_id.clone()];
                for (r, _) in stack.iter().rev() {
                    if batch.len() >= want {
                        break;
                    }
                    if !seen.contains(r) && !infos.contains_key(r) && !batch.contains(r) {
                        batch.push(r.clone());
                    }
                }
                infos.extend(self.load_room_infos(&batch).await?);
            }
            let Some(Some(info)) = infos.get(&room_id) else {
                continue; // unknown here (a remote room: not walked without federation)
            };
            if !see_all && !info.visible_to(membership(&room_id), &joined) {
                continue;
            }
            rooms.push(info.to_json(req.suggested_only));
            if req.max_depth.is_none_or(|max| depth < max) {
                for child in info.child_ids(req.suggested_only).into_iter().rev() {
                    if !seen.contains(&child) {
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
        stack.retain(|(r, _)| !seen.contains(r));
        let mut out = json!({ "rooms": rooms });
        if !stack.is_empty() {
            let walk = Walk {
                stack,
                seen: seen.into_iter().collect(),
            };
            out["next_batch"] = json!(self.save_hierarchy_page(user, root, &req, &walk).await?);
        }
        Ok(out)
    }

    /// Where a walk starts: the root, or where the page of `from` stopped (a token of this
    /// user for the same root and parameters, not expired).
    async fn hierarchy_walk(
        self,
        user: &UserId,
        root: &RoomId,
        req: &HierarchyRequest,
    ) -> Result<Walk> {
        let Some(token) = &req.from else {
            return Ok(Walk {
                stack: vec![(root.to_string(), 0)],
                seen: vec![],
            });
        };
        let unknown = || Error::invalid_param("Unknown pagination token");
        if token.len() > 64 {
            return Err(unknown());
        }
        let page = self
            .db
            .hierarchy_page(token, util::now_ms())
            .await?
            .filter(|p| {
                p.user_id == user.as_str()
                    && p.room_id == root.as_str()
                    && p.suggested_only == req.suggested_only
                    && p.max_depth == req.max_depth
            })
            .ok_or_else(unknown)?;
        serde_json::from_str(&page.walk).map_err(|_| unknown())
    }

    /// Saves where a walk stopped; the token of the next page.
    async fn save_hierarchy_page(
        self,
        user: &UserId,
        root: &RoomId,
        req: &HierarchyRequest,
        walk: &Walk,
    ) -> Result<String> {
        let token = util::random_string(24);
        let now = util::now_ms();
        let page = HierarchyPage {
            user_id: user.to_string(),
            room_id: root.to_string(),
            suggested_only: req.suggested_only,
            max_depth: req.max_depth,
            walk: serde_json::to_string(walk)?,
        };
        self.db
            .insert_hierarchy_page(&token, &page, now + PAGE_VALIDITY_MS, now)
            .await?;
        Ok(token)
    }

    /// Summaries of local rooms (None for rooms unknown here), in two queries: the summary
    /// state of every room, and their member counts.
    async fn load_room_infos(self, rooms: &[String]) -> Result<Vec<(String, Option<RoomInfo>)>> {
        let rows = self
            .db
            .current_state_events(rooms, Some(SUMMARY_TYPES))
            .await?;
        let counts = self.db.member_counts(rooms).await?;
        // Client format: redacted state reads as redacted.
        let events = self.format_events(&rows, None, Format::Client).await?;
        let mut state: HashMap<&str, Vec<&Value>> = HashMap::new();
        for (row, ev) in rows.iter().zip(&events) {
            state.entry(row.room_id.as_str()).or_default().push(ev);
        }
        let out = rooms
            .iter()
            .map(|room_id| {
                let evs = state.remove(room_id.as_str()).unwrap_or_default();
                (room_id.clone(), room_info(room_id, &evs, &counts))
            })
            .collect();
        Ok(out)
    }
}

impl RoomsFace<'_> {
    /// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (spec v1.15, MSC3266): what a
    /// room is, for someone who may see it — a member (joined or invited), anyone when it is
    /// world-readable, or who could join or knock (public, knock, a restricted room whose
    /// allowed rooms they are in). Without a token, only rooms anyone may see. Otherwise 404,
    /// as for a room unknown here (remote rooms are not fetched over federation yet).
    /// `unstable`: the `im.nheko.summary.*` names of the unstable path are added.
    pub async fn room_summary(
        self,
        user: Option<&UserId>,
        room_id: &RoomId,
        unstable: bool,
    ) -> Result<Option<Value>> {
        let infos = self.load_room_infos(&[room_id.to_string()]).await?;
        let Some((_, Some(info))) = infos.into_iter().next() else {
            return Ok(None); // unknown here
        };
        let (membership, joined) = match user {
            Some(u) => {
                let m = self
                    .db
                    .membership(u.as_str(), room_id.as_str())
                    .await?
                    .map(|m| m.membership);
                let joined: Vec<String> = if info.join_rule.ends_with("restricted") {
                    self.db
                        .user_memberships(u.as_str())
                        .await?
                        .into_iter()
                        .filter(|m| m.membership == "join")
                        .map(|m| m.room_id)
                        .collect()
                } else {
                    vec![]
                };
                (m, joined)
            }
            None => (None, vec![]),
        };
        let joined_set: HashSet<&str> = joined.iter().map(String::as_str).collect();
        if !info.visible_to(membership.as_deref(), &joined_set) {
            return Err(Error::not_found("Room not found or is not accessible"));
        }
        let mut out = info.summary.clone();
        if info.join_rule.ends_with("restricted") {
            out.insert("allowed_room_ids".into(), json!(info.allow));
        }
        if user.is_some() {
            out.insert(
                "membership".into(),
                json!(membership.as_deref().unwrap_or("leave")),
            );
        }
        if unstable {
            unstable_names(&mut out);
        }
        Ok(Some(Value::Object(out)))
    }

    /// `GET /room_summary/{roomIdOrAlias}`: a room known here is summarised from its state;
    /// another is asked of the servers in `via` (or an alias's servers), over federation.
    pub async fn room_summary_of(
        self,
        user: Option<&UserId>,
        id_or_alias: &str,
        mut via: Vec<ruma::OwnedServerName>,
        unstable: bool,
    ) -> Result<Value> {
        let room = if id_or_alias.starts_with('#') {
            let alias = ruma::RoomAliasId::parse(id_or_alias)
                .map_err(|_| Error::invalid_param("Invalid room alias"))?;
            let (room, servers) = self.alias_and_servers(&alias).await?;
            via.extend(servers.iter().filter_map(|v| ServerName::parse(v).ok()));
            room
        } else {
            RoomId::parse(id_or_alias)
                .map_err(|_| Error::invalid_param("Invalid room id or alias"))?
        };
        match self.room_summary(user, &room, unstable).await? {
            Some(v) => Ok(v),
            None => self.remote_room_summary(user, &room, &via, unstable).await,
        }
    }

    /// The summary of a room this server does not know, from another server's
    /// `/federation/v1/hierarchy` (the first of `via` that answers; that server applied its
    /// own rules for this one): shown to `user` by the same rules as a local room's, judged
    /// on what the other server said of it.
    pub async fn remote_room_summary(
        self,
        user: Option<&UserId>,
        room_id: &RoomId,
        via: &[ruma::OwnedServerName],
        unstable: bool,
    ) -> Result<Value> {
        let hidden = || Error::not_found("Room not found or is not accessible");
        let Some(room) = self.remote_hierarchy_room(room_id, via).await else {
            return Err(hidden());
        };
        let Value::Object(remote) = room else {
            return Err(hidden());
        };
        let mut out = Map::new();
        for key in [
            "room_id",
            "name",
            "topic",
            "canonical_alias",
            "avatar_url",
            "num_joined_members",
            "world_readable",
            "guest_can_join",
            "join_rule",
            "room_type",
            "room_version",
            "encryption",
            "allowed_room_ids",
        ] {
            if let Some(v) = remote.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        for (stable, old) in [
            ("room_version", "im.nheko.summary.room_version"),
            ("encryption", "im.nheko.summary.encryption"),
        ] {
            if let (false, Some(v)) = (out.contains_key(stable), remote.get(old)) {
                out.insert(stable.to_owned(), v.clone());
            }
        }
        if out.get("room_id").and_then(Value::as_str) != Some(room_id.as_str()) {
            return Err(hidden());
        }
        let membership = match user {
            Some(u) => self
                .db
                .membership(u.as_str(), room_id.as_str())
                .await?
                .map(|m| m.membership),
            None => None,
        };
        let join_rule = out
            .get("join_rule")
            .and_then(Value::as_str)
            .unwrap_or("public");
        let world_readable = out.get("world_readable") == Some(&Value::Bool(true));
        let allowed: Vec<String> = out
            .get("allowed_room_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let in_allowed = match (user, join_rule.ends_with("restricted")) {
            (Some(u), true) => self
                .db
                .user_memberships(u.as_str())
                .await?
                .iter()
                .any(|m| m.membership == "join" && allowed.contains(&m.room_id)),
            _ => false,
        };
        let visible = matches!(membership.as_deref(), Some("join" | "invite"))
            || world_readable
            || matches!(join_rule, "public" | "knock" | "knock_restricted")
            || in_allowed;
        if !visible {
            return Err(hidden());
        }
        if user.is_some() {
            out.insert(
                "membership".into(),
                json!(membership.as_deref().unwrap_or("leave")),
            );
        }
        if unstable {
            unstable_names(&mut out);
        }
        Ok(Value::Object(out))
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}`: a room and its direct children as
    /// another server may see them. A room is accessible to a server when the server has a
    /// user joined to it, or it is world-readable, or its join rule lets anyone join or knock,
    /// or it is restricted to a room the server has a user joined to; the room ACL must allow
    /// the server. An inaccessible root is 404 (spec); inaccessible children are only named.
    pub async fn server_hierarchy(
        self,
        origin: &ServerName,
        root: &RoomId,
        suggested_only: bool,
    ) -> Result<Value> {
        self.ratelimit.check(
            "hierarchy",
            origin.as_str(),
            self.config.rate_limits.message,
        )?;
        let mut infos: HashMap<String, Option<RoomInfo>> = self
            .load_room_infos(&[root.to_string()])
            .await?
            .into_iter()
            .collect();
        let children: Vec<String> = match infos.get(root.as_str()) {
            Some(Some(info)) => info.child_ids(suggested_only),
            _ => return Err(Error::not_found("Unknown room")),
        };
        let children: Vec<String> = children
            .into_iter()
            .filter(|c| c != root.as_str())
            .take(MAX_ROOMS * 4)
            .collect();
        infos.extend(self.load_room_infos(&children).await?);
        // The rooms whose membership matters (these and the rooms restricted ones name), read
        // once; the ACLs of all of them, read once.
        let mut rooms: Vec<String> = vec![root.to_string()];
        rooms.extend(children.iter().cloned());
        for info in infos.values().flatten() {
            rooms.extend(info.allow.iter().cloned());
        }
        rooms.sort();
        rooms.dedup();
        let joined: HashSet<String> = self
            .db
            .server_members(&rooms, origin.as_str())
            .await?
            .into_iter()
            .filter(|(_, _, m)| m == "join")
            .map(|(r, _, _)| r)
            .collect();
        let mut banned: HashSet<String> = HashSet::new();
        let acl_rooms: Vec<String> = infos.keys().cloned().collect();
        for row in self
            .db
            .current_state_events(&acl_rooms, Some(&["m.room.server_acl"]))
            .await?
        {
            let ev: Value = serde_json::from_str(&row.json).unwrap_or_default();
            if !super::federation_port::acl_allows(&ev["content"], origin) {
                banned.insert(row.room_id);
            }
        }
        let accessible = |room_id: &str, info: &RoomInfo| -> bool {
            if banned.contains(room_id) {
                return false;
            }
            let joined_refs: HashSet<&str> = joined.iter().map(String::as_str).collect();
            let membership = joined.contains(room_id).then_some("join");
            info.visible_to(membership, &joined_refs)
        };
        let root_info = match infos.get(root.as_str()) {
            Some(Some(info)) if accessible(root.as_str(), info) => info,
            _ => return Err(Error::not_found("Unknown room")),
        };
        let mut out_children = vec![];
        let mut inaccessible = vec![];
        for child in &children {
            let Some(Some(info)) = infos.get(child) else {
                continue; // not a room of this server
            };
            if accessible(child, info) {
                out_children.push(info.to_server_json(suggested_only));
            } else {
                inaccessible.push(json!(child));
            }
        }
        Ok(json!({
            "room": root_info.to_server_json(suggested_only),
            "children": out_children,
            "inaccessible_children": inaccessible,
        }))
    }
}

impl RoomInfo {
    /// The summary served to other servers: with `allowed_room_ids` for restricted rooms.
    fn to_server_json(&self, suggested_only: bool) -> Value {
        let mut v = self.to_json(suggested_only);
        if matches!(self.join_rule.as_str(), "restricted" | "knock_restricted") {
            v["allowed_room_ids"] = json!(self.allow);
        }
        v
    }
}

/// A room's summary from its summary state (client format) and member counts; None without a
/// create event (a room unknown here).
fn room_info(room_id: &str, evs: &[&Value], counts: &[(String, String, i64)]) -> Option<RoomInfo> {
    let get = |kind: &str| {
        evs.iter()
            .find(|e| e["type"] == kind && e["state_key"] == "")
            .map(|e| &e["content"])
    };
    let create = get("m.room.create")?;
    let version_id = create["room_version"].as_str().unwrap_or("1").to_owned();
    let rules = version::parse(&version_id).map(|(_, r)| r);
    let text = |kind: &str, field: &str| {
        get(kind)
            .and_then(|c| c[field].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let join_rules = get("m.room.join_rules");
    let join_rule = join_rules
        .and_then(|c| c["join_rule"].as_str())
        .unwrap_or("invite")
        .to_owned();
    let allow: Vec<String> = join_rules
        .and_then(|c| c["allow"].as_array())
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "m.room_membership")
        .filter_map(|a| a["room_id"].as_str().map(str::to_owned))
        .collect();
    let world_readable = text("m.room.history_visibility", "history_visibility").as_deref()
        == Some("world_readable");
    let room_type = create["type"].as_str().map(str::to_owned);
    let joined = counts
        .iter()
        .find(|(r, m, _)| r == room_id && m == "join")
        .map(|(_, _, n)| *n)
        .unwrap_or(0);
    let mut summary = Map::new();
    summary.insert("room_id".into(), json!(room_id));
    summary.insert("num_joined_members".into(), json!(joined));
    summary.insert("world_readable".into(), json!(world_readable));
    summary.insert(
        "guest_can_join".into(),
        json!(text("m.room.guest_access", "guest_access").as_deref() == Some("can_join")),
    );
    summary.insert("join_rule".into(), json!(join_rule));
    summary.insert("room_version".into(), json!(version_id));
    for (key, value) in [
        ("name", text("m.room.name", "name")),
        ("topic", text("m.room.topic", "topic")),
        ("canonical_alias", text("m.room.canonical_alias", "alias")),
        ("avatar_url", text("m.room.avatar", "url")),
        ("encryption", text("m.room.encryption", "algorithm")),
        ("room_type", room_type.clone()),
    ] {
        if let Some(v) = value {
            summary.insert(key.into(), json!(v));
        }
    }
    Some(RoomInfo {
        rules,
        summary,
        join_rule,
        allow,
        world_readable,
        is_space: room_type.as_deref() == Some("m.space"),
        children: space_children(evs),
    })
}

/// A space's children (valid `m.space.child` events, stripped), in the spec's order: valid
/// `order` first (lexicographic), then by the child event's timestamp, then by room id; each
/// with whether it is suggested.
fn space_children(evs: &[&Value]) -> Vec<(Value, bool)> {
    let mut children: Vec<&Value> = evs
        .iter()
        .copied()
        .filter(|e| e["type"] == "m.space.child" && has_via(&e["content"]))
        .filter(|e| e["state_key"].as_str().is_some_and(|k| !k.is_empty()))
        .collect();
    children.sort_by(|a, b| {
        let (oa, ob) = (child_order(&a["content"]), child_order(&b["content"]));
        (
            oa.is_none(),
            oa,
            a["origin_server_ts"].as_i64(),
            a["state_key"].as_str(),
        )
            .cmp(&(
                ob.is_none(),
                ob,
                b["origin_server_ts"].as_i64(),
                b["state_key"].as_str(),
            ))
    });
    children
        .into_iter()
        .map(|e| {
            let stripped = json!({
                "type": e["type"],
                "state_key": e["state_key"],
                "content": e["content"],
                "sender": e["sender"],
                "origin_server_ts": e["origin_server_ts"],
            });
            (stripped, e["content"]["suggested"] == true)
        })
        .collect()
}

/// The page size asked (positive, at most [`MAX_ROOMS`]), `max_depth` checked too.
fn hierarchy_limit(req: &HierarchyRequest) -> Result<usize> {
    let limit = match req.limit {
        Some(l) if l <= 0 => return Err(Error::invalid_param("limit must be a positive integer")),
        Some(l) => (l as usize).min(MAX_ROOMS),
        None => MAX_ROOMS,
    };
    if req.max_depth.is_some_and(|d| d < 0) {
        return Err(Error::invalid_param(
            "max_depth must be a non-negative integer",
        ));
    }
    Ok(limit)
}
