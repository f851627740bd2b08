//! History visibility: which events a user may see, decided from the state at each event.

use crate::services::rooms::RoomsFace;
use std::collections::HashMap;

use ruma::UserId;
use serde_json::Value;

use crate::{
    store::{events::EventRow, rooms::MembershipRow},
    Result,
};

/// `content.history_visibility` of a stored `m.room.history_visibility` event's JSON (parsed:
/// the same word elsewhere in the event, e.g. `unsigned.prev_content`, means nothing).
pub fn history_visibility(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    v["content"]["history_visibility"]
        .as_str()
        .map(str::to_owned)
}

impl RoomsFace<'_> {
    /// Keeps the events `user` may see, in one pass over every room involved: one query for the
    /// relevant state at all the events' state groups, one for those state events, one for the
    /// user's memberships.
    pub async fn filter_visible(self, user: &UserId, rows: Vec<EventRow>) -> Result<Vec<EventRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let memberships = self.db.user_memberships(user.as_str()).await?;
        self.filter_visible_with(user, rows, &memberships).await
    }

    /// [`Self::filter_visible`] with the user's memberships already read (sync has them).
    pub async fn filter_visible_with(
        self,
        user: &UserId,
        mut rows: Vec<EventRow>,
        memberships: &[MembershipRow],
    ) -> Result<Vec<EventRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        // The events of users this one ignores are not shown (their state events are).
        let ignored = self.sync().ignored_users(user).await?;
        if !ignored.is_empty() {
            rows.retain(|r| r.state_key.is_some() || !ignored.contains(&r.sender));
            if rows.is_empty() {
                return Ok(rows);
            }
        }
        // Fast path: a user joined now, whose join came before an event, was joined when it was
        // sent; only the other events need the state at the event.
        let joined_since: HashMap<&str, i64> = memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| (m.room_id.as_str(), m.stream_ordering))
            .collect();
        let order: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let (fast, rows): (Vec<EventRow>, Vec<EventRow>) = rows.into_iter().partition(|r| {
            joined_since
                .get(r.room_id.as_str())
                .is_some_and(|since| r.stream_ordering >= *since)
        });
        if rows.is_empty() {
            return Ok(fast);
        }
        let mut groups: Vec<i64> = rows.iter().filter_map(|r| r.state_group).collect();
        groups.sort_unstable();
        groups.dedup();
        let keys = [
            ("m.room.history_visibility", ""),
            ("m.room.member", user.as_str()),
        ];
        let states = self.db.state_at_groups(&groups, Some(&keys)).await?;
        let mut ids: Vec<String> = states.values().flat_map(|s| s.values().cloned()).collect();
        ids.sort();
        ids.dedup();
        let contents: HashMap<String, Value> = self
            .db
            .get_events(&ids)
            .await?
            .into_iter()
            .filter_map(|r| {
                let v: Value = serde_json::from_str(&r.json).ok()?;
                Some((r.event_id, v.get("content").cloned().unwrap_or_default()))
            })
            .collect();
        let current: HashMap<&str, &str> = memberships
            .iter()
            .map(|m| (m.room_id.as_str(), m.membership.as_str()))
            .collect();
        let field = |group: Option<i64>, kind: &str, key: &str, name: &str| -> Option<String> {
            let id = states
                .get(&group?)?
                .get(&(kind.to_owned(), key.to_owned()))?;
            contents.get(id)?.get(name)?.as_str().map(str::to_owned)
        };
        let mut visible: Vec<EventRow> = rows
            .into_iter()
            .filter(|r| {
                if r.kind == "m.room.member" && r.state_key.as_deref() == Some(user.as_str()) {
                    return true;
                }
                let hv = field(
                    r.state_group,
                    "m.room.history_visibility",
                    "",
                    "history_visibility",
                )
                .unwrap_or_else(|| "shared".into());
                let at = field(r.state_group, "m.room.member", user.as_str(), "membership")
                    .unwrap_or_default();
                let now = current.get(r.room_id.as_str()).copied().unwrap_or("");
                match hv.as_str() {
                    "world_readable" => true,
                    _ if at == "join" => true,
                    "invited" => at == "invite",
                    "joined" => false,
                    // "shared" and unknown values
                    _ => now == "join",
                }
            })
            .collect();
        visible.extend(fast);
        // Back in the caller's order.
        let mut by_id: HashMap<String, EventRow> = visible
            .into_iter()
            .map(|r| (r.event_id.clone(), r))
            .collect();
        Ok(order.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}
