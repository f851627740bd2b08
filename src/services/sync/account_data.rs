//! Account data (global and per room), profiles and stored filters.

use crate::services::sync::SyncFace;
use ruma::{RoomId, UserId};
use serde_json::Value;

use crate::services::filter::Filter;
use crate::{store::users::ProfileField, Error, Result};

const MAX_ACCOUNT_DATA_BYTES: usize = 65_536;

impl SyncFace<'_> {
    pub async fn put_account_data(
        self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("Account data must be a JSON object"));
        }
        if kind == "m.fully_read" || kind == "m.push_rules" {
            return Err(Error::bad_json(format!(
                "{kind} cannot be set through account data"
            )));
        }
        self.store_account_data(user, room, kind, content).await
    }

    /// Stores account data without the client-facing type checks (the server's own writes,
    /// such as `m.fully_read` from read markers).
    pub(crate) async fn store_account_data(
        self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        let text = serde_json::to_string(content)?;
        if text.len() > MAX_ACCOUNT_DATA_BYTES {
            return Err(Error::too_large("Account data too large"));
        }
        let room_key = room.map(|r| r.to_string()).unwrap_or_default();
        let ids = self.take_positions(|s| &s.account_data_stream, 1).await?;
        let wake = vec![user.to_owned()];
        let fin = self.finish_of(|s| &s.account_data_stream, &ids, &wake);
        let res = self
            .db
            .put_account_data(user.as_str(), &room_key, kind, &text, ids[0], fin.as_ref())
            .await;
        if res.is_ok() {
            if room.is_none() && kind == super::ignored::TYPE {
                self.forget_ignored(&wake);
            }
            self.completed(|s| &s.account_data_stream, &ids, wake).await;
        } else {
            self.abandon_positions(|s| &s.account_data_stream, ids);
        }
        res?;
        if room.is_none() && kind == "im.vector.hide_profile" {
            self.policy().annuaire_touch(user).await;
        }
        Ok(())
    }

    pub async fn get_account_data(
        self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
    ) -> Result<Value> {
        let room_key = room.map(|r| r.to_string()).unwrap_or_default();
        let text = self
            .db
            .get_account_data(user.as_str(), &room_key, kind)
            .await?
            .ok_or_else(|| Error::not_found("Account data not found"))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn set_profile(
        self,
        user: &UserId,
        field: ProfileField,
        value: Option<&str>,
    ) -> Result<()> {
        if value.is_some_and(|v| v.len() > 1024) {
            return Err(Error::too_large("Profile field too long"));
        }
        self.db
            .set_profile_field(user.as_str(), field, value)
            .await?;
        self.policy().annuaire_touch(user).await;
        Ok(())
    }

    pub async fn create_filter(self, user: &UserId, filter: Value) -> Result<String> {
        let parsed: Filter =
            serde_json::from_value(filter).map_err(|e| Error::bad_json(e.to_string()))?;
        let text = serde_json::to_string(&parsed)?;
        if text.len() > 65_536 {
            return Err(Error::too_large("Filter too large"));
        }
        Ok(self
            .db
            .insert_filter(user.as_str(), &text)
            .await?
            .to_string())
    }

    pub async fn get_filter(self, user: &UserId, id: &str) -> Result<Filter> {
        let id: i64 = id.parse().map_err(|_| Error::not_found("No such filter"))?;
        let text = self
            .db
            .get_filter(user.as_str(), id)
            .await?
            .ok_or_else(|| Error::not_found("No such filter"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// A sync filter given inline (JSON) or by id.
    pub async fn resolve_filter(self, user: &UserId, filter: Option<&str>) -> Result<Filter> {
        match filter {
            None => Ok(Filter::default()),
            Some(f) if f.trim_start().starts_with('{') => {
                serde_json::from_str(f).map_err(|e| Error::bad_json(format!("Invalid filter: {e}")))
            }
            Some(id) => self.get_filter(user, id).await,
        }
    }
}
