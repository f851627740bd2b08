//! Room aliases, directory visibility, the published room directory (`/publicRooms`) and the
//! user's joined rooms.

use crate::services::rooms::RoomsFace;
use std::collections::HashMap;

use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{services::requester::Requester, store::Db, Error, Result};

impl RoomsFace<'_> {
    /// The room a local alias points to.
    pub async fn resolve_alias(self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        let (room, _) = self
            .db
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
        RoomId::parse(room).map_err(|e| Error::unknown(e.to_string()))
    }

    /// `PUT /directory/room/{alias}`: creates a local alias for a known room; false when the
    /// alias is taken. Unless `require_membership_for_aliases` is off, only a member (joined)
    /// of the room may, as in Synapse; server admins always may.
    pub async fn create_alias(
        self,
        r: &Requester,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<bool> {
        if alias.server_name() != self.server_name {
            return Err(Error::invalid_param("Alias must be on this server"));
        }
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        if self.config.require_membership_for_aliases
            && !self.accounts().is_admin(&r.user_id).await?
        {
            let joined = self
                .db
                .membership(r.user_id.as_str(), room_id.as_str())
                .await?
                .is_some_and(|m| m.membership == "join");
            if !joined {
                return Err(Error::forbidden(
                    "You must be in the room to create an alias for it",
                ));
            }
        }
        self.add_alias(&r.user_id, alias, room_id).await
    }

    /// Creates a local alias for a known room, no membership asked (createRoom's
    /// `room_alias_name`); false when the alias is taken.
    pub(super) async fn add_alias(
        self,
        creator: &UserId,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<bool> {
        if alias.server_name() != self.server_name {
            return Err(Error::invalid_param("Alias must be on this server"));
        }
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        let mut tx = self.db.begin_write().await?;
        let added = Db::insert_alias(
            &mut tx.tx,
            alias.as_str(),
            room_id.as_str(),
            creator.as_str(),
        )
        .await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Removes an alias: its creator, a server admin, or a room moderator (power ≥ 50) may.
    pub async fn remove_alias(self, r: &Requester, alias: &RoomAliasId) -> Result<()> {
        let (room, creator) = self
            .db
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
        if creator != r.user_id.as_str() && !self.accounts().is_admin(&r.user_id).await? {
            let room_id = RoomId::parse(&room).map_err(|e| Error::unknown(e.to_string()))?;
            let guard = self.lock_room(&room_id).await?;
            let allowed = guard.as_ref().is_some_and(|st| {
                st.user_power(&r.user_id) >= st.action_power("state_default").max(50)
            });
            if !allowed {
                return Err(Error::forbidden("You cannot delete this alias"));
            }
        }
        Ok(self.db.delete_alias(alias.as_str()).await?)
    }

    /// Local aliases of a room the user may read.
    pub async fn room_aliases(
        self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        // Only those who may read the room's state (the spec allows world_readable rooms too).
        self.room_state_event(user, room_id, "m.room.create", "", false)
            .await?;
        let aliases = self.db.room_aliases(room_id.as_str()).await?;
        Ok(aliases
            .into_iter()
            .filter_map(|a| RoomAliasId::parse(a).ok())
            .collect())
    }

    /// Whether a known room is published in the room directory.
    pub async fn room_is_public(self, room_id: &RoomId) -> Result<bool> {
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        Ok(self.db.room_is_public(room_id.as_str()).await?)
    }

    /// Publishes or unpublishes a room: server admins, or who may set its canonical alias.
    pub async fn set_room_public(
        self,
        r: &Requester,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        let admin = self.accounts().is_admin(&r.user_id).await?;
        {
            let guard = self.lock_room(room_id).await?;
            let st = guard
                .as_ref()
                .ok_or_else(|| Error::not_found("Unknown room"))?;
            let needed = st.power_levels()["events"]["m.room.canonical_alias"]
                .as_i64()
                .unwrap_or(50);
            if !admin && st.user_power(&r.user_id) < needed {
                return Err(Error::forbidden("You cannot change this room's visibility"));
            }
            if public && !admin {
                self.policy().policy_may_publish(&r.user_id, st)?;
            }
        }
        Ok(self.db.set_room_public(room_id.as_str(), public).await?)
    }

    pub async fn joined_rooms(self, user: &UserId) -> Result<Vec<String>> {
        let rooms = self.db.user_memberships(user.as_str()).await?;
        Ok(rooms
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect())
    }
}

/// A `/publicRooms` request (GET query or POST body).
#[derive(Debug, Default, Deserialize)]
pub struct PublicRoomsRequest {
    pub limit: Option<i64>,
    pub since: Option<String>,
    pub filter: Option<PublicRoomsFilter>,
    pub include_all_networks: Option<bool>,
    pub third_party_instance_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PublicRoomsFilter {
    pub generic_search_term: Option<String>,
    /// `None` entries stand for rooms without a type.
    pub room_types: Option<Vec<Option<String>>>,
}

/// Rooms per page at most (and when the client gives no limit).
const MAX_PUBLIC_ROOMS_PAGE: i64 = 500;
/// Longest `generic_search_term`, in bytes.
const MAX_ROOM_SEARCH_TERM: usize = 256;

/// One room of the directory, built from its current state.
struct DirectoryEntry {
    room_id: String,
    members: i64,
    json: Value,
    /// Lower-cased name, topic and canonical alias, for the search term.
    haystack: Vec<String>,
    room_type: Option<String>,
    listable: bool,
}

impl RoomsFace<'_> {
    /// `/publicRooms`: the rooms published in this server's directory whose join rule is public
    /// or knock (or whose history is world readable), with at least one joined member, largest
    /// first. `since` tokens are offsets (`p<n>`). Another server's directory is asked of it.
    pub async fn public_rooms(
        self,
        requester: &UserId,
        server: Option<&str>,
        req: PublicRoomsRequest,
    ) -> Result<Value> {
        self.ratelimit
            .check("search", requester.as_str(), self.config.rate_limits.search)?;
        if let Some(s) = server {
            if s != self.server_name.as_str() {
                let server = ruma::ServerName::parse(s)
                    .map_err(|_| Error::invalid_param("Invalid server name"))?;
                return self.remote_public_rooms(&server, req).await;
            }
        }
        self.local_public_rooms(req).await
    }

    /// This server's published rooms, for its clients and (over federation) other servers.
    pub async fn local_public_rooms(self, req: PublicRoomsRequest) -> Result<Value> {
        let offset = match req.since.as_deref() {
            None | Some("") => 0,
            Some(t) => t
                .strip_prefix('p')
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::invalid_param("Invalid since token"))?,
        };
        let limit = match req.limit {
            Some(l) if l < 0 => return Err(Error::invalid_param("limit must not be negative")),
            Some(0) | None => MAX_PUBLIC_ROOMS_PAGE,
            Some(l) => l.min(MAX_PUBLIC_ROOMS_PAGE),
        };
        let filter = req.filter.unwrap_or_default();
        let term = match filter.generic_search_term.as_deref().map(str::trim) {
            Some(t) if t.len() > MAX_ROOM_SEARCH_TERM => {
                return Err(Error::invalid_param("generic_search_term is too long"))
            }
            Some(t) if !t.is_empty() => Some(t.to_lowercase()),
            _ => None,
        };
        // No bridges here: a third-party network has no rooms.
        if req.third_party_instance_id.is_some() && req.include_all_networks != Some(true) {
            return Ok(json!({ "chunk": [], "total_room_count_estimate": 0 }));
        }

        let counts = self.db.published_rooms().await?;
        let state = self.db.published_rooms_state().await?;
        let mut by_room: HashMap<&str, HashMap<&str, Value>> = HashMap::new();
        for row in &state {
            let content = serde_json::from_str::<Value>(&row.json)
                .ok()
                .and_then(|mut v| v.get_mut("content").map(Value::take))
                .unwrap_or_default();
            by_room
                .entry(row.room_id.as_str())
                .or_default()
                .insert(row.kind.as_str(), content);
        }
        let empty = HashMap::new();
        let mut entries: Vec<DirectoryEntry> = counts
            .into_iter()
            .map(|(room_id, members)| {
                let st = by_room.get(room_id.as_str()).unwrap_or(&empty);
                directory_entry(room_id, members, st)
            })
            .filter(|e| e.listable)
            .collect();
        let total = entries.len();
        entries.retain(|e| {
            term.as_ref()
                .is_none_or(|t| e.haystack.iter().any(|h| h.contains(t.as_str())))
                && filter
                    .room_types
                    .as_ref()
                    .is_none_or(|types| types.contains(&e.room_type))
        });
        entries.sort_by(|a, b| {
            b.members
                .cmp(&a.members)
                .then_with(|| a.room_id.cmp(&b.room_id))
        });
        let matched = entries.len() as i64;
        let page: Vec<Value> = entries
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .map(|e| e.json)
            .collect();
        let mut out = json!({
            "chunk": page,
            "total_room_count_estimate": if term.is_some() || filter.room_types.is_some() {
                matched
            } else {
                total as i64
            },
        });
        // `since` comes from the client: saturate near i64::MAX.
        let next = offset.saturating_add(limit);
        if next < matched {
            out["next_batch"] = json!(format!("p{next}"));
        }
        if offset > 0 {
            out["prev_batch"] = json!(format!("p{}", offset.saturating_sub(limit).max(0)));
        }
        Ok(out)
    }
}

fn directory_entry(room_id: String, members: i64, st: &HashMap<&str, Value>) -> DirectoryEntry {
    let field = |kind: &str, name: &str| -> Option<String> {
        st.get(kind)?.get(name)?.as_str().map(str::to_owned)
    };
    let name = field("m.room.name", "name").filter(|s| !s.is_empty());
    let topic = field("m.room.topic", "topic").filter(|s| !s.is_empty());
    let alias = field("m.room.canonical_alias", "alias").filter(|s| !s.is_empty());
    let avatar = field("m.room.avatar", "url").filter(|s| !s.is_empty());
    let join_rule = field("m.room.join_rules", "join_rule");
    let world_readable = field("m.room.history_visibility", "history_visibility").as_deref()
        == Some("world_readable");
    let guest_can_join =
        field("m.room.guest_access", "guest_access").as_deref() == Some("can_join");
    let room_type = field("m.room.create", "type");
    let listable = world_readable
        || matches!(
            join_rule.as_deref(),
            Some("public" | "knock" | "knock_restricted")
        );
    let mut json = json!({
        "room_id": room_id,
        "num_joined_members": members,
        "world_readable": world_readable,
        "guest_can_join": guest_can_join,
    });
    for (k, v) in [
        ("name", &name),
        ("topic", &topic),
        ("canonical_alias", &alias),
        ("avatar_url", &avatar),
        ("join_rule", &join_rule),
        ("room_type", &room_type),
    ] {
        if let Some(v) = v {
            json[k] = json!(v);
        }
    }
    let haystack = [&name, &topic, &alias]
        .into_iter()
        .flatten()
        .map(|s| s.to_lowercase())
        .collect();
    DirectoryEntry {
        room_id,
        members,
        json,
        haystack,
        room_type,
        listable,
    }
}
