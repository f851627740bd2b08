//! To-device messages: `PUT /sendToDevice`, delivery in `/sync`, acknowledgement by `since`.
//! A message is deleted only once its device has synced past it, so a retried sync gets it
//! again and nothing is lost between a response and a crash.

use crate::services::e2ee::E2eeFace;
use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{json, Map, Value};

use crate::{
    store::{federation::EduRow, to_device::NewToDevice, Db},
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

/// Largest content of one outgoing `m.direct_to_device` EDU: larger batches are split into
/// several EDUs (oversized ones were lost in Tchap's production, taking room keys with them).
const EDU_MESSAGES_BYTES: usize = 65_536;

/// Splits (user, device, content) messages into groups whose contents add up to at most
/// `EDU_MESSAGES_BYTES` (a message larger than that on its own travels alone).
fn edu_chunks(list: Vec<(String, String, String)>) -> Vec<Vec<(String, String, String)>> {
    let mut out: Vec<Vec<(String, String, String)>> = vec![];
    let mut size = 0;
    for m in list {
        // The content plus the user and device keys and JSON punctuation.
        let n = m.2.len() + m.0.len() + m.1.len() + 8;
        if out.is_empty() || size + n > EDU_MESSAGES_BYTES - 1024 {
            out.push(vec![]);
            size = 0;
        }
        size += n;
        if let Some(last) = out.last_mut() {
            last.push(m);
        }
    }
    out
}

/// Messages for local users: (recipient, [(device id or "*", serialized content)]).
type LocalMessages = Vec<(OwnedUserId, Vec<(String, String)>)>;

/// What makes a batch of to-device messages happen once.
enum Once<'a> {
    /// A client's transaction id.
    Client { device: &'a str, key: String },
    /// A federation EDU's message id.
    Federation {
        origin: &'a str,
        message_id: &'a str,
    },
}

/// Parses `{user: {device: content}}`, each content serialized once and size-limited.
fn parse_messages(messages: &Map<String, Value>) -> Result<LocalMessages> {
    messages
        .iter()
        .map(|(user, devices)| Ok((crate::util::parse_user_id(user)?, parse_devices(devices)?)))
        .collect()
}

/// One user's `{device: content}`.
fn parse_devices(devices: &Value) -> Result<Vec<(String, String)>> {
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
        contents.push((device.clone(), text));
    }
    Ok(contents)
}

impl E2eeFace<'_> {
    /// `PUT /sendToDevice/{type}/{txnId}`, idempotent per (sender device, type, txn id).
    /// Messages for other servers' users leave as one `m.direct_to_device` EDU per server,
    /// queued durably in the same transaction.
    pub async fn send_to_device(
        self,
        sender: &UserId,
        sender_device: &str,
        kind: &str,
        txn: &str,
        messages: &Map<String, Value>,
    ) -> Result<()> {
        if kind.is_empty() || kind.len() > 255 || kind.contains('\0') {
            return Err(Error::invalid_param("Invalid event type"));
        }
        let mut local: LocalMessages = vec![];
        // Per server, messages in chunks of at most EDU_MESSAGES_BYTES: (user, device, content).
        let mut remote: BTreeMap<OwnedServerName, Vec<(String, String, String)>> = BTreeMap::new();
        for (uid, contents) in parse_messages(messages)? {
            if self.is_local(&uid) {
                local.push((uid, contents));
                continue;
            }
            if !self.config.federation.enabled {
                tracing::warn!(%uid, "to-device message for a remote user dropped: federation disabled");
                continue;
            }
            let list = remote.entry(uid.server_name().to_owned()).or_default();
            for (d, text) in contents {
                list.push((uid.to_string(), d, text));
            }
        }
        let mut edus = vec![];
        for (server, list) in remote {
            for chunk in edu_chunks(list) {
                let mut messages = Map::new();
                for (user, device, text) in chunk {
                    let entry = messages
                        .entry(user)
                        .or_insert_with(|| Value::Object(Map::new()));
                    entry[device] = serde_json::from_str(&text)?;
                }
                let content = json!({
                    "sender": sender,
                    "type": kind,
                    "message_id": util::random_string(24),
                    "messages": messages,
                });
                edus.extend(self.federation().plan_edus(
                    std::slice::from_ref(&server),
                    "m.direct_to_device",
                    &content,
                ));
            }
        }
        let once = Once::Client {
            device: sender_device,
            key: format!("sendToDevice|{kind}|{txn}"),
        };
        self.store_to_device(sender, kind, local, &edus, once, true)
            .await
    }

    /// An `m.direct_to_device` EDU from `origin`: delivered to this server's users once per
    /// message id.
    pub async fn receive_to_device_edu(self, origin: &ServerName, content: &Value) -> Result<()> {
        let sender = crate::util::parse_user_id(content["sender"].as_str().unwrap_or_default())?;
        if sender.server_name() != origin {
            return Err(Error::forbidden(
                "to-device message of another server's user",
            ));
        }
        let kind = content["type"].as_str().unwrap_or_default();
        if kind.is_empty() || kind.len() > 255 || kind.contains('\0') {
            return Err(Error::invalid_param("Invalid event type"));
        }
        let message_id = content["message_id"].as_str().unwrap_or_default();
        if message_id.is_empty() || message_id.len() > 255 || message_id.contains('\0') {
            return Err(Error::invalid_param("to-device EDU without a message_id"));
        }
        let empty = Map::new();
        let messages = content["messages"].as_object().unwrap_or(&empty);
        // One bad entry loses only itself: the others may carry room keys.
        let mut local: LocalMessages = vec![];
        for (user, devices) in messages {
            let Ok(uid) = UserId::parse(user.as_str()) else {
                continue;
            };
            if !self.is_local(&uid) {
                continue;
            }
            match parse_devices(devices) {
                Ok(contents) => local.push((uid, contents)),
                Err(e) => {
                    tracing::info!(%origin, %user, error = %e.message, "to-device entries skipped")
                }
            }
        }
        let once = Once::Federation {
            origin: origin.as_str(),
            message_id,
        };
        self.store_to_device(&sender, kind, local, &[], once, false)
            .await
    }

    /// Queues messages for local devices (and EDUs for other servers) in one transaction, once.
    /// `strict`: a full queue refuses the request (a client can retry later); otherwise that
    /// device is skipped (an EDU cannot be refused in part).
    async fn store_to_device(
        self,
        sender: &UserId,
        kind: &str,
        local: LocalMessages,
        edus: &[EduRow],
        once: Once<'_>,
        strict: bool,
    ) -> Result<()> {
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
                let targets: Vec<&String> = if device == "*" {
                    known.iter().collect()
                } else {
                    // Unknown devices are skipped, as the spec's servers do.
                    known.iter().filter(|d| *d == device).collect()
                };
                for d in targets {
                    if full.contains(&(user.clone(), d.clone())) {
                        if device == "*" || !strict {
                            tracing::warn!(%user, device = %d, "to-device queue full: device skipped");
                            continue;
                        }
                        return Err(Error::queue_full(format!(
                            "The to-device queue of {user} {d} is full"
                        )));
                    }
                    planned.push((user.clone(), d.clone(), content.clone()));
                }
            }
        }
        planned.sort();
        planned.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);

        // Positions are taken once the transaction id is known to be new: a retry takes none.
        let mut ids: Vec<i64> = vec![];
        let res: Result<bool> = async {
            let mut tx = self.db.begin_write().await?;
            let first = match &once {
                Once::Client { device, key } => {
                    Db::claim_txn(&mut tx.tx, sender.as_str(), device, key, util::now_ms()).await?
                }
                Once::Federation { origin, message_id } => {
                    Db::claim_received_edu(&mut tx.tx, origin, message_id, util::now_ms()).await?
                }
            };
            if !first {
                return Ok(false); // a retry: already queued
            }
            // In the transaction: it holds a connection, and must not wait for another.
            ids = self
                .take_positions_in(|s| &s.to_device_stream, &mut tx.tx, planned.len())
                .await?;
            let rows: Vec<NewToDevice> = planned
                .into_iter()
                .zip(ids.iter())
                .map(|((u, d, c), id)| (u, d, *id, sender.to_string(), kind.to_owned(), c))
                .collect();
            Db::insert_to_device(&mut tx.tx, &rows).await?;
            Db::insert_edu_outbox(&mut tx.tx, edus).await?;
            if let Some(max) = ids.iter().max() {
                Db::raise_stream_head(&mut tx.tx, STREAM, *max).await?;
            }
            let wake: Vec<OwnedUserId> = local.iter().map(|(u, _)| u.clone()).collect();
            let fin = self.finish_of(|s| &s.to_device_stream, &ids, &wake);
            self.db.finish_positions(&mut tx.tx, fin.as_ref()).await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        if matches!(res, Ok(true)) {
            let wake = local.iter().map(|(u, _)| u.clone()).collect();
            self.completed(|s| &s.to_device_stream, &ids, wake).await;
        } else {
            self.abandon_positions(|s| &s.to_device_stream, ids);
        }
        if matches!(res, Ok(true)) {
            self.federation().wake_edus(edus);
        }
        res.map(|_| ())
    }

    /// The device's messages after `since` (deleting those up to `since`: the client has them),
    /// and the position to hand back.
    pub async fn to_device_for_sync(
        self,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edus_are_split_under_64_kib_keeping_every_message_in_order() {
        let list: Vec<(String, String, String)> = (0..100)
            .map(|i| (format!("@u{}:b", i % 7), format!("D{i}"), "x".repeat(2000)))
            .collect();
        let chunks = edu_chunks(list.clone());
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        for c in &chunks {
            let size: usize = c
                .iter()
                .map(|m| m.0.len() + m.1.len() + m.2.len() + 8)
                .sum();
            assert!(size <= EDU_MESSAGES_BYTES, "{size}");
        }
        assert_eq!(chunks.concat(), list);
        assert_eq!(edu_chunks(vec![]).len(), 0);
    }
}
