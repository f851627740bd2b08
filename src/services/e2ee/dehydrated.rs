//! Dehydrated devices (MSC3814): a device kept on the server, encrypted with a key only the
//! user holds, that receives to-device messages while the user has no device online.

use crate::services::e2ee::E2eeFace;
use ruma::UserId;
use serde_json::{json, Value};

use super::device_keys::KeyUpload;
use crate::{store::Db, util, Error, Result};

const MAX_DEVICE_DATA_BYTES: usize = 256 * 1024;

impl E2eeFace<'_> {
    /// `PUT /dehydrated_device`: replaces the user's dehydrated device.
    pub async fn put_dehydrated_device(self, user: &UserId, body: &Value) -> Result<Value> {
        let device_id = body["device_id"]
            .as_str()
            .filter(|d| !d.is_empty() && d.len() <= 255)
            .ok_or_else(|| Error::bad_json("device_id must be a string"))?;
        if !body["device_data"].is_object() {
            return Err(Error::bad_json("device_data must be an object"));
        }
        let data = serde_json::to_string(&body["device_data"])?;
        if data.len() > MAX_DEVICE_DATA_BYTES {
            return Err(Error::too_large("device_data too large"));
        }
        let up = KeyUpload::from_json(body)?;
        let keys = up
            .device_keys
            .as_ref()
            .ok_or_else(|| Error::bad_json("device_keys is required"))?;
        super::device_keys::check_device_keys(keys, user, device_id)?;

        if let Some((old, _)) = self.db.get_dehydrated_device(user.as_str()).await? {
            self.accounts().delete_devices(user, &[old]).await?;
        }
        let name = body["initial_device_display_name"].as_str();
        let mut tx = self.db.begin_write().await?;
        if !Db::insert_device(&mut tx.tx, user.as_str(), device_id, name, util::now_ms()).await? {
            return Err(Error::invalid_param("A device with this id already exists"));
        }
        Db::put_dehydrated_device(&mut tx.tx, user.as_str(), device_id, &data).await?;
        tx.commit().await?;
        self.upload_keys(user, device_id, up).await?;
        Ok(json!({ "device_id": device_id }))
    }

    pub async fn get_dehydrated_device(self, user: &UserId) -> Result<Value> {
        let (device_id, data) = self
            .db
            .get_dehydrated_device(user.as_str())
            .await?
            .ok_or_else(|| Error::not_found("No dehydrated device"))?;
        Ok(json!({
            "device_id": device_id,
            "device_data": serde_json::from_str::<Value>(&data).unwrap_or_default(),
        }))
    }

    pub async fn delete_dehydrated_device(self, user: &UserId) -> Result<Value> {
        let (device_id, _) = self
            .db
            .get_dehydrated_device(user.as_str())
            .await?
            .ok_or_else(|| Error::not_found("No dehydrated device"))?;
        self.accounts()
            .delete_devices(user, std::slice::from_ref(&device_id))
            .await?;
        Ok(json!({ "device_id": device_id }))
    }

    /// `POST /dehydrated_device/{device_id}/events`: the device's to-device messages, in pages;
    /// asking with a `next_batch` acknowledges everything before it.
    pub async fn dehydrated_device_events(
        self,
        user: &UserId,
        device_id: &str,
        next_batch: Option<&str>,
    ) -> Result<Value> {
        match self.db.get_dehydrated_device(user.as_str()).await? {
            Some((d, _)) if d == device_id => {}
            _ => {
                return Err(Error::forbidden(
                    "You may only fetch the events of your own dehydrated device",
                ))
            }
        }
        let since = match next_batch {
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| Error::invalid_param("Invalid next_batch"))?,
            None => 0,
        };
        let until = self.to_device_stream.current();
        let (events, next) = self
            .to_device_for_sync(user, device_id, since, until)
            .await?;
        Ok(json!({ "events": events, "next_batch": next.to_string() }))
    }
}
