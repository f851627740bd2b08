//! Room aliases, directory visibility and the user's joined rooms.

use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, UserId};

use crate::{
    services::{accounts::Requester, Services},
    store::Db,
    Error, Result,
};

impl Services {
    /// The room a local alias points to.
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        let (room, _) = self
            .db
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
        RoomId::parse(room).map_err(|e| Error::unknown(e.to_string()))
    }

    /// Creates a local alias for a known room; false when the alias is taken.
    pub async fn add_alias(
        &self,
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
    pub async fn remove_alias(&self, r: &Requester, alias: &RoomAliasId) -> Result<()> {
        let (room, creator) = self
            .db
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room alias not found"))?;
        if creator != r.user_id.as_str() && !r.is_admin {
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
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        // Only those who may read the room's state (the spec allows world_readable rooms too).
        self.room_state_event(user, room_id, "m.room.create", "")
            .await?;
        let aliases = self.db.room_aliases(room_id.as_str()).await?;
        Ok(aliases
            .into_iter()
            .filter_map(|a| RoomAliasId::parse(a).ok())
            .collect())
    }

    /// Whether a known room is published in the room directory.
    pub async fn room_is_public(&self, room_id: &RoomId) -> Result<bool> {
        if self.db.room_version(room_id.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        Ok(self.db.room_is_public(room_id.as_str()).await?)
    }

    /// Publishes or unpublishes a room: server admins, or who may set its canonical alias.
    pub async fn set_room_public(
        &self,
        r: &Requester,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        {
            let guard = self.lock_room(room_id).await?;
            let st = guard
                .as_ref()
                .ok_or_else(|| Error::not_found("Unknown room"))?;
            let needed = st.power_levels()["events"]["m.room.canonical_alias"]
                .as_i64()
                .unwrap_or(50);
            if !r.is_admin && st.user_power(&r.user_id) < needed {
                return Err(Error::forbidden("You cannot change this room's visibility"));
            }
        }
        Ok(self.db.set_room_public(room_id.as_str(), public).await?)
    }

    pub async fn joined_rooms(&self, user: &UserId) -> Result<Vec<String>> {
        let rooms = self.db.user_memberships(user.as_str()).await?;
        Ok(rooms
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect())
    }
}
