//! To-device messages: `PUT /sendToDevice`, delivery in `/sync`, acknowledgement by `since`.
//! A message is deleted only once its device has synced past it, so a retried sync gets it
//! again and nothing is lost between a response and a crash.

use std::collections::{HashMap, HashSet};

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use crate::{
    services::Services,
    store::{to_device::NewToDevice, Db},
    util, Error, Result,
};

/// Largest accepted message content (Tchap: oversized to-device messages lose room keys;
/// clients split larger payloads).
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// Messages waiting for one device beyond which new ones are refused (explicit targets) or
/// skipped (`*`): a device that never syncs must not grow without bound.
pub const MAX_QUEUE: i64 = 20_000;
/// Messages delivered per sync.
pub const SYNC_BATCH: i64 = 100;
/// Name of the to-device stream in `stream_heads`.
pub const STREAM: &str = "to_device";

impl Services {
    /// `PUT /sendToDevice/{type}/{txnId}`, idempotent per (sender device, type, txn id).
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &str,
        kind: &str,
        txn: &str,
        messages: &Map<String, Value>,
    ) -> Result<()> {
        if kind.is_empty() || kind.len() > 255 {
            return Err(Error::invalid_param("Invalid event type"));
        }
        // (recipient, device id or "*", serialized content), each content serialized once.
        let mut local: Vec<(OwnedUserId, Vec<(&String, String)>)> = vec![];
        for (user, devices) in messages {
            let uid = crate::util::parse_user_id(user)?;
            let devices = devices
                .as_object()
                .ok_or_else(|| Error::bad_json("messages values must be objects"))?;
            let mut contents = Vec::with_capacity(devices.len());
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(Error::bad_json(
                        "A to-device message content must be an object",
                    ));
                }
                let text = serde_json::to_string(content)?;
                if text.len() > MAX_MESSAGE_BYTES {
                    return Err(Error::too_large("To-device message over 64 KiB"));
                }
                contents.push((device, text));
            }
            if self.is_local(&uid) {
                local.push((uid, contents));
            } else {
                // Federation delivers these once it exists; nothing can reach them before.
                tracing::warn!(%uid, "to-device message for a remote user dropped: federation unavailable");
            }
        }
        let users: Vec<String> = local.iter().map(|(u, _)| u.to_string()).collect();
        let mut devices_of: HashMap<String, Vec<String>> = HashMap::new();
        for (u, d) in self.db.devices_of(&users).await? {
            devices_of.entry(u).or_default().push(d);
        }
        let full: HashSet<(String, String)> = self
            .db
            .to_device_queue_lengths(&users)
            .await?
            .into_iter()
            .filter(|(_, _, n)| *n >= MAX_QUEUE)
            .map(|(u, d, _)| (u, d))
            .collect();
        let mut planned: Vec<(String, String, String)> = vec![]; // (user, device, content)
        for (uid, devices) in &local {
            let user = uid.to_string();
            let known = devices_of.get(&user).map(Vec::as_slice).unwrap_or_default();
            for (device, content) in devices {
                let targets: Vec<&String> = if *device == "*" {
                    known.iter().collect()
                } else {
                    // Unknown devices are skipped, as the spec's servers do.
                    known.iter().filter(|d| d == device).collect()
                };
                for d in targets {
                    if full.contains(&(user.clone(), d.clone())) {
                        if *device == "*" {
                            tracing::warn!(%user, device = %d, "to-device queue full: device skipped");
                            continue;
                        }
                        return Err(Error::new(
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            "M_LIMIT_EXCEEDED",
                            format!("The to-device queue of {user} {d} is full"),
                        ));
                    }
                    planned.push((user.clone(), d.clone(), content.clone()));
                }
            }
        }
        planned.sort();
        planned.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);

        let ids = self.to_device_stream.allocate(planned.len());
        let rows: Vec<NewToDevice> = planned
            .into_iter()
            .zip(ids.iter())
            .map(|((u, d, c), id)| (u, d, *id, sender.to_string(), kind.to_owned(), c))
            .collect();
        let txn_key = format!("sendToDevice|{kind}|{txn}");
        let res: Result<bool> = async {
            let mut tx = self.db.begin_write().await?;
            if !Db::claim_txn(
                &mut tx.tx,
                sender.as_str(),
                sender_device,
                &txn_key,
                util::now_ms(),
            )
            .await?
            {
                return Ok(false); // a retry: already queued
            }
            Db::insert_to_device(&mut tx.tx, &rows).await?;
            if let Some(max) = ids.iter().max() {
                Db::raise_stream_head(&mut tx.tx, STREAM, *max).await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await;
        let wake: Vec<OwnedUserId> = match res {
            Ok(true) => local.iter().map(|(u, _)| u.clone()).collect(),
            _ => vec![],
        };
        let ready = self.to_device_stream.complete(&ids, wake);
        self.notifier.notify(ready.iter().map(|u| -> &UserId { u }));
        res.map(|_| ())
    }

    /// The device's messages after `since` (deleting those up to `since`: the client has them),
    /// and the position to hand back.
    pub async fn to_device_for_sync(
        &self,
        user: &UserId,
        device: &str,
        since: i64,
        until: i64,
    ) -> Result<(Vec<Value>, i64)> {
        if since > 0
            && self
                .db
                .has_to_device_upto(user.as_str(), device, since)
                .await?
        {
            self.db
                .delete_to_device_upto(user.as_str(), device, since)
                .await?;
        }
        if since >= until {
            return Ok((vec![], since.max(until)));
        }
        let rows = self
            .db
            .to_device_since(user.as_str(), device, since, until, SYNC_BATCH)
            .await?;
        let next = if rows.len() as i64 == SYNC_BATCH {
            rows.last().map_or(until, |r| r.0)
        } else {
            until
        };
        let events = rows
            .into_iter()
            .map(|(_, sender, kind, content)| {
                json!({
                    "sender": sender,
                    "type": kind,
                    "content": serde_json::from_str::<Value>(&content).unwrap_or_default(),
                })
            })
            .collect();
        Ok((events, next))
    }
}
