//! Room tagging: a user's tags on a room are the room account data `m.tag`
//! (`{"tags": {"m.favourite": {"order": 0.5}}}`), so clients get them in /sync.

use crate::services::sync::SyncFace;
use std::hash::{Hash, Hasher};

use ruma::{RoomId, UserId};
use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// Longest tag name, in bytes.
pub const MAX_TAG_BYTES: usize = 255;

/// A tag change reads the `m.tag` content, edits it and writes it back: changes of one user
/// are serialised (striped locks, so memory does not grow with users) so two concurrent
/// changes cannot lose each other.
#[derive(Default)]
pub struct TagLocks([tokio::sync::Mutex<()>; 16]);

impl TagLocks {
    fn of(&self, user: &UserId) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        &self.0[(h.finish() % self.0.len() as u64) as usize]
    }
}

impl SyncFace<'_> {
    /// The user's tags on a room (`{}` when none).
    pub async fn room_tags(self, user: &UserId, room: &RoomId) -> Result<Value> {
        Ok(Value::Object(self.tags_of(user, room).await?))
    }

    async fn tags_of(self, user: &UserId, room: &RoomId) -> Result<Map<String, Value>> {
        let text = self
            .db
            .get_account_data(user.as_str(), room.as_str(), "m.tag")
            .await?;
        let content: Value = match text {
            Some(t) => serde_json::from_str(&t)?,
            None => return Ok(Map::new()),
        };
        Ok(content["tags"].as_object().cloned().unwrap_or_default())
    }

    /// Adds or replaces a tag. `content` is the tag's object; its `order`, when given, is a
    /// number between 0 and 1.
    pub async fn set_room_tag(
        self,
        user: &UserId,
        room: &RoomId,
        tag: &str,
        content: Value,
    ) -> Result<()> {
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
            return Err(Error::invalid_param(format!(
                "A tag name is 1 to {MAX_TAG_BYTES} bytes long"
            )));
        }
        if !content.is_object() {
            return Err(Error::bad_json("The tag must be a JSON object"));
        }
        match &content["order"] {
            Value::Null => {}
            Value::Number(n) if n.as_f64().is_some_and(|o| (0.0..=1.0).contains(&o)) => {}
            Value::Number(_) => return Err(Error::invalid_param("order must be between 0 and 1")),
            _ => return Err(Error::bad_json("order must be a number")),
        }
        let _lock = self.tag_locks.of(user).lock().await;
        let mut tags = self.tags_of(user, room).await?;
        tags.insert(tag.to_owned(), content);
        self.store_account_data(user, Some(room), "m.tag", &json!({ "tags": tags }))
            .await
    }

    /// Removes a tag (nothing to do when the room does not have it).
    pub async fn delete_room_tag(self, user: &UserId, room: &RoomId, tag: &str) -> Result<()> {
        let _lock = self.tag_locks.of(user).lock().await;
        let mut tags = self.tags_of(user, room).await?;
        if tags.remove(tag).is_none() {
            return Ok(());
        }
        self.store_account_data(user, Some(room), "m.tag", &json!({ "tags": tags }))
            .await
    }
}
