//! Rooms as the admin API sees them: the room list, one room's details, members and state,
//! blocks and forward extremities.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::{AdminFace, Page};
use crate::{
    store::admin_rooms::{AdminRoomRow, RoomListQuery},
    Error, Result,
};

/// `GET /_synapse/admin/v1/rooms`.
#[derive(Debug, Clone, Default)]
pub struct RoomListParams {
    pub from: Option<i64>,
    pub limit: Option<i64>,
    pub order_by: Option<String>,
    pub dir: Option<String>,
    pub search_term: Option<String>,
    pub public_rooms: Option<bool>,
    pub empty_rooms: Option<bool>,
}

fn order_column(order_by: Option<&str>) -> Result<&'static str> {
    Ok(match order_by.unwrap_or("name") {
        "name" | "alphabetical" => "COALESCE(t.name, '')",
        "size" | "joined_members" => "t.joined_members",
        "canonical_alias" => "COALESCE(t.canonical_alias, '')",
        "joined_local_members" => "t.joined_local_members",
        "version" => "t.room_version",
        "creator" => "t.creator",
        "encryption" => "COALESCE(t.encryption, '')",
        "federatable" => "COALESCE(t.federate, 'true')",
        "public" => "t.is_public",
        "join_rules" => "COALESCE(t.join_rules, '')",
        "guest_access" => "COALESCE(t.guest_access, '')",
        "history_visibility" => "COALESCE(t.history_visibility, '')",
        "state_events" => "t.state_events",
        _ => return Err(Error::invalid_param("Unknown value for order_by")),
    })
}

/// A room as the listing shows it.
fn list_entry(r: &AdminRoomRow) -> Value {
    json!({
        "room_id": r.room_id,
        "name": r.name,
        "canonical_alias": r.canonical_alias,
        "joined_members": r.joined_members,
        "joined_local_members": r.joined_local_members,
        "version": r.room_version,
        "creator": r.creator,
        "encryption": r.encryption,
        "federatable": r.federate.as_deref() != Some("false") && r.federate.as_deref() != Some("0"),
        "public": r.is_public == 1,
        "join_rules": r.join_rules,
        "guest_access": r.guest_access,
        "history_visibility": r.history_visibility,
        "state_events": r.state_events,
        "room_type": r.room_type,
    })
}

impl AdminFace<'_> {
    /// A page of rooms: `{rooms, offset, total_rooms, next_batch?, prev_batch?}`.
    pub async fn list_rooms(self, p: RoomListParams) -> Result<Value> {
        let page = Page::new(p.from, p.limit, 100)?;
        let q = RoomListQuery {
            search_term: p.search_term.filter(|s| !s.is_empty()),
            public_rooms: p.public_rooms,
            empty_rooms: p.empty_rooms,
            order_by: order_column(p.order_by.as_deref())?,
            descending: super::backwards(p.dir.as_deref())?,
            from: page.from,
            limit: page.limit,
        };
        let (rows, total) = self
            .db
            .admin_list_rooms(self.server_name.as_str(), &q)
            .await?;
        let mut out = json!({
            "rooms": rows.iter().map(list_entry).collect::<Vec<_>>(),
            "offset": page.from,
            "total_rooms": total,
        });
        if let Some(next) = page.next(rows.len(), total) {
            out["next_batch"] = json!(next);
        }
        if page.from > 0 {
            out["prev_batch"] = json!((page.from - page.limit).max(0));
        }
        Ok(out)
    }

    async fn room_row(self, room: &RoomId) -> Result<AdminRoomRow> {
        self.db
            .admin_room(self.server_name.as_str(), room.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Room not found"))
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}`.
    pub async fn room_details(self, room: &RoomId) -> Result<Value> {
        let r = self.room_row(room).await?;
        let mut v = list_entry(&r);
        v["topic"] = json!(r.topic);
        v["avatar"] = json!(r.avatar);
        v["joined_local_devices"] = json!(
            self.db
                .room_local_devices(room.as_str(), self.server_name.as_str())
                .await?
        );
        v["forgotten"] = json!(false);
        Ok(v)
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/members`: the joined members.
    pub async fn room_members(self, room: &RoomId) -> Result<Value> {
        self.room_row(room).await?;
        let members: Vec<String> = self
            .db
            .room_members(room.as_str())
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.user_id)
            .collect();
        Ok(json!({ "members": members, "total": members.len() }))
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/state`: the current state, client format.
    pub async fn room_state(self, room: &RoomId) -> Result<Value> {
        self.room_row(room).await?;
        let events = self.rooms().full_state(room).await?;
        Ok(json!({ "state": events }))
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/block`.
    pub async fn room_block(self, room: &RoomId) -> Result<Value> {
        Ok(match self.db.room_block(room.as_str()).await? {
            Some(by) => json!({ "block": true, "user_id": by }),
            None => json!({ "block": false }),
        })
    }

    /// `PUT /_synapse/admin/v1/rooms/{room_id}/block` (a room unknown here may be blocked too,
    /// before anyone joins it).
    pub async fn set_room_block(self, by: &UserId, room: &RoomId, block: bool) -> Result<()> {
        self.db
            .set_room_block(room.as_str(), block.then_some(by.as_str()))
            .await?;
        Ok(())
    }

    /// Refuses a join or an invite to a blocked room (403 `M_FORBIDDEN`, as Synapse).
    pub async fn check_room_not_blocked(self, room: &RoomId) -> Result<()> {
        if self.db.room_block(room.as_str()).await?.is_some() {
            return Err(Error::forbidden(
                "This room has been blocked on this server",
            ));
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/rooms/{room_id}/forward_extremities`.
    pub async fn forward_extremities(self, room: &RoomId) -> Result<Value> {
        self.room_row(room).await?;
        let rows = self.db.extremities_detail(room.as_str()).await?;
        let results: Vec<Value> = rows
            .into_iter()
            .map(|(event_id, depth, group, ts)| {
                json!({ "event_id": event_id, "depth": depth, "state_group": group, "received_ts": ts })
            })
            .collect();
        Ok(json!({ "count": results.len(), "results": results }))
    }
}
