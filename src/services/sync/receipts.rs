//! Read receipts (`m.read`, `m.read.private`, threaded) and read markers (`m.fully_read`).

use crate::services::sync::SyncFace;
use std::collections::BTreeMap;

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use crate::{util, Error, Result};

impl SyncFace<'_> {
    /// A receipt or read marker from `user` on `event_id`. A public receipt older than the one
    /// already held is ignored (receipts only move forward).
    pub async fn set_receipt(
        self,
        user: &UserId,
        room: &RoomId,
        kind: &str,
        event_id: &str,
        thread_id: Option<&str>,
    ) -> Result<()> {
        if !matches!(kind, "m.read" | "m.read.private" | "m.fully_read") {
            return Err(Error::invalid_param("Unknown receipt type"));
        }
        let joined = self
            .db
            .membership(user.as_str(), room.as_str())
            .await?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            return Err(Error::forbidden("You are not in this room"));
        }
        let thread = thread_id.unwrap_or_default();
        if kind == "m.fully_read" && !thread.is_empty() {
            return Err(Error::invalid_param("Read markers are not threaded"));
        }
        let old = match kind {
            "m.fully_read" => None,
            _ => {
                self.db
                    .receipt_event(room.as_str(), kind, user.as_str(), thread)
                    .await?
            }
        };
        let mut ids = vec![event_id.to_owned()];
        ids.extend(old.clone());
        let events = self.db.get_events(&ids).await?;
        let new_pos = events
            .iter()
            .find(|e| e.event_id == event_id && e.room_id == room.as_str())
            .map(|e| e.stream_ordering)
            .ok_or_else(|| Error::not_found("Event not found in this room"))?;
        if let Some(old) = old {
            let old_pos = events
                .iter()
                .find(|e| e.event_id == old)
                .map(|e| e.stream_ordering);
            if old_pos.is_some_and(|p| p >= new_pos) {
                return Ok(());
            }
        }
        if kind == "m.fully_read" {
            return self
                .store_account_data(
                    user,
                    Some(room),
                    "m.fully_read",
                    &json!({ "event_id": event_id }),
                )
                .await;
        }
        let wake: Vec<OwnedUserId> = if kind == "m.read.private" {
            vec![user.to_owned()]
        } else {
            self.local_members(room).await?
        };
        let ids = self.take_positions(|s| &s.receipt_stream, 1).await?;
        let fin = self.finish_of(|s| &s.receipt_stream, &ids, &wake);
        let res = self
            .db
            .put_receipt(
                room.as_str(),
                kind,
                user.as_str(),
                thread,
                event_id,
                util::now_ms(),
                ids[0],
                new_pos,
                fin.as_ref(),
            )
            .await;
        if res.is_ok() {
            self.completed(|s| &s.receipt_stream, &ids, wake).await;
        } else {
            self.abandon_positions(|s| &s.receipt_stream, ids);
        }
        res?;
        if kind == "m.read" && self.is_local(user) {
            let mut read = Map::new();
            let mut data = json!({ "ts": util::now_ms() });
            if !thread.is_empty() {
                data["thread_id"] = json!(thread);
            }
            read.insert(
                user.to_string(),
                json!({ "event_ids": [event_id], "data": data }),
            );
            self.federation().send_edu_to_room(
                room,
                json!({ "edu_type": "m.receipt", "content": { room.as_str(): { "m.read": read } } }),
            )
            .await;
        }
        Ok(())
    }

    /// `m.receipt` ephemeral events per room for a sync: every receipt of the joined rooms on an
    /// initial sync, the changed ones otherwise. Private receipts only for their owner.
    pub(super) async fn receipts_for_sync(
        self,
        user: &UserId,
        since: Option<i64>,
        until: i64,
    ) -> Result<BTreeMap<String, Value>> {
        if since.is_some_and(|s| s >= until) {
            return Ok(BTreeMap::new());
        }
        let rows = self.db.receipts_for(user.as_str(), since, until).await?;
        let mut per_room: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (room, kind, who, thread, event, ts) in rows {
            if kind == "m.read.private" && who != user.as_str() {
                continue;
            }
            let mut data = json!({ "ts": ts });
            if !thread.is_empty() {
                data["thread_id"] = json!(thread);
            }
            let content = per_room.entry(room).or_default();
            let ev = content.entry(event).or_insert_with(|| json!({}));
            ev[&kind][&who] = data;
        }
        Ok(per_room
            .into_iter()
            .map(|(room, content)| (room, json!({ "type": "m.receipt", "content": content })))
            .collect())
    }
}
