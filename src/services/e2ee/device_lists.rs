//! Device-list tracking: which users' devices a client must re-fetch (`changed`) or may stop
//! tracking (`left`), for `/sync` and `/keys/changes`.

use crate::services::e2ee::E2eeFace;
use std::collections::BTreeSet;

use ruma::UserId;

use crate::Result;

/// The window a delta covers: positions on the device-list and event streams.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub lists_since: i64,
    pub lists_until: i64,
    pub events_since: i64,
    pub events_until: i64,
}

/// The rooms to look at for membership changes.
pub struct RoomsSeen<'a> {
    /// Joined rooms with activity in the window (others cannot hold membership changes).
    pub active: &'a [String],
    /// Rooms the user joined in the window: all their members are new to the client.
    pub newly_joined: &'a [String],
    /// Rooms the user left in the window: their members may no longer share a room.
    pub left: &'a [String],
}

impl E2eeFace<'_> {
    /// (changed, left) user ids in the window.
    pub async fn device_list_delta(
        self,
        user: &UserId,
        w: Window,
        rooms: RoomsSeen<'_>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        if w.lists_since < w.lists_until {
            changed.extend(
                self.db
                    .device_list_changes_for(user.as_str(), w.lists_since, w.lists_until)
                    .await?,
            );
        }
        if w.events_since < w.events_until && !rooms.active.is_empty() {
            for (member, membership) in self
                .db
                .membership_changes(rooms.active, w.events_since, w.events_until)
                .await?
            {
                match membership.as_str() {
                    "join" | "invite" => changed.insert(member),
                    _ => candidates.insert(member),
                };
            }
        }
        if !rooms.newly_joined.is_empty() {
            changed.extend(
                self.db
                    .members_of(rooms.newly_joined)
                    .await?
                    .into_iter()
                    .map(|(_, m)| m),
            );
        }
        if !rooms.left.is_empty() {
            candidates.extend(
                self.db
                    .members_of(rooms.left)
                    .await?
                    .into_iter()
                    .map(|(_, m)| m),
            );
        }
        candidates.remove(user.as_str());
        let mut left = vec![];
        if !candidates.is_empty() {
            let list: Vec<String> = candidates.into_iter().collect();
            let sharing: BTreeSet<String> = self
                .db
                .still_sharing(user.as_str(), &list)
                .await?
                .into_iter()
                .collect();
            left = list.into_iter().filter(|u| !sharing.contains(u)).collect();
        }
        for u in &left {
            changed.remove(u);
        }
        Ok((changed.into_iter().collect(), left))
    }

    /// `/keys/changes`: the delta between two sync tokens.
    pub async fn keys_changes(
        self,
        user: &UserId,
        from: &str,
        to: &str,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let from = crate::services::streams::SyncToken::parse(from)?;
        let to = crate::services::streams::SyncToken::parse(to)?;
        let memberships = self.db.user_memberships(user.as_str()).await?;
        let in_window = |s: i64| s > from.events && s <= to.events;
        let joined: Vec<String> = memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id.clone())
            .collect();
        let newly_joined: Vec<String> = memberships
            .iter()
            .filter(|m| m.membership == "join" && in_window(m.stream_ordering))
            .map(|m| m.room_id.clone())
            .collect();
        let left: Vec<String> = memberships
            .iter()
            .filter(|m| m.membership != "join" && in_window(m.stream_ordering))
            .map(|m| m.room_id.clone())
            .collect();
        self.device_list_delta(
            user,
            Window {
                lists_since: from.device_lists,
                lists_until: to.device_lists,
                events_since: from.events,
                events_until: to.events,
            },
            RoomsSeen {
                active: &joined,
                newly_joined: &newly_joined,
                left: &left,
            },
        )
        .await
    }
}
