//! Server-side key backup (`/room_keys`). The server keeps encrypted session keys per backup
//! version and applies the spec's rule for which copy of a session key to keep.

use crate::services::e2ee::E2eeFace;
use std::collections::BTreeMap;

use ruma::UserId;
use serde_json::{json, Map, Value};

use crate::{
    store::backup::{BackupKey, BackupVersion},
    Error, Result,
};

const MAX_AUTH_DATA_BYTES: usize = 65_536;

fn version_json(v: BackupVersion) -> Value {
    json!({
        "algorithm": v.algorithm,
        "auth_data": serde_json::from_str::<Value>(&v.auth_data).unwrap_or_default(),
        "count": v.count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    })
}

/// Versions are decimal strings; anything else names no version.
pub fn parse_version(s: &str) -> Option<i64> {
    s.parse().ok().filter(|v| *v > 0)
}

fn no_version(v: &str) -> Error {
    Error::not_found(format!("Unknown backup version {v}"))
}

/// The spec's replacement rule: a verified key beats an unverified one; then the lower
/// `first_message_index`; then the lower `forwarded_count`.
fn better(new: &BackupKey, old: &BackupKey) -> bool {
    if new.is_verified != old.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != old.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// One `KeyBackupData` object.
fn parse_key(room: &str, session: &str, v: &Value) -> Result<BackupKey> {
    let int = |f: &str| {
        v[f].as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::bad_json(format!("{f} must be a non-negative integer")))
    };
    let is_verified = v["is_verified"]
        .as_bool()
        .ok_or_else(|| Error::bad_json("is_verified must be a boolean"))?;
    if !v["session_data"].is_object() {
        return Err(Error::bad_json("session_data must be an object"));
    }
    if room.is_empty() || session.is_empty() {
        return Err(Error::bad_json("Empty room or session id"));
    }
    Ok(BackupKey {
        room_id: room.to_owned(),
        session_id: session.to_owned(),
        first_message_index: int("first_message_index")?,
        forwarded_count: int("forwarded_count")?,
        is_verified,
        session_data: serde_json::to_string(&v["session_data"])?,
    })
}

fn key_json(k: &BackupKey) -> Value {
    json!({
        "first_message_index": k.first_message_index,
        "forwarded_count": k.forwarded_count,
        "is_verified": k.is_verified,
        "session_data": serde_json::from_str::<Value>(&k.session_data).unwrap_or_default(),
    })
}

/// Which part of a backup a `/room_keys/keys` request addresses.
pub enum KeysScope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl KeysScope<'_> {
    fn parts(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::All => (None, None),
            Self::Room(r) => (Some(r), None),
            Self::Session(r, s) => (Some(r), Some(s)),
        }
    }
}

impl E2eeFace<'_> {
    pub async fn create_backup(self, user: &UserId, body: &Value) -> Result<Value> {
        let (algorithm, auth_data) = backup_params(body)?;
        let v = self
            .db
            .create_backup_version(user.as_str(), algorithm, &auth_data)
            .await?;
        Ok(json!({ "version": v.to_string() }))
    }

    /// The newest version, or a given one.
    pub async fn get_backup(self, user: &UserId, version: Option<&str>) -> Result<Value> {
        let v = match version {
            Some(s) => Some(parse_version(s).ok_or_else(|| no_version(s))?),
            None => None,
        };
        let found = self.db.backup_version(user.as_str(), v).await?;
        found.map(version_json).ok_or_else(|| match version {
            Some(s) => no_version(s),
            None => Error::not_found("No current backup version"),
        })
    }

    pub async fn update_backup(self, user: &UserId, version: &str, body: &Value) -> Result<()> {
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        let (algorithm, auth_data) = backup_params(body)?;
        if let Some(given) = body.get("version") {
            if given.as_str() != Some(version) {
                return Err(Error::invalid_param("version does not match the path"));
            }
        }
        let current = self
            .db
            .backup_version(user.as_str(), Some(v))
            .await?
            .ok_or_else(|| no_version(version))?;
        if current.algorithm != algorithm {
            return Err(Error::invalid_param(
                "The algorithm of a backup cannot change",
            ));
        }
        if !self
            .db
            .update_backup_version(user.as_str(), v, &auth_data)
            .await?
        {
            return Err(no_version(version));
        }
        Ok(())
    }

    pub async fn delete_backup(self, user: &UserId, version: &str) -> Result<()> {
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        if !self.db.delete_backup_version(user.as_str(), v).await? {
            return Err(no_version(version));
        }
        Ok(())
    }

    /// Only the current (newest) version accepts keys.
    async fn writable_version(self, user: &UserId, version: &str) -> Result<i64> {
        let current = self.db.backup_version(user.as_str(), None).await?;
        match (current, parse_version(version)) {
            (Some(c), Some(v)) if c.version == v => Ok(v),
            (Some(c), _) => Err(Error::wrong_room_keys_version("Wrong backup version")
                .with_extra("current_version", json!(c.version.to_string()))),
            (None, _) => Err(no_version(version)),
        }
    }

    /// `PUT /room_keys/keys[/{room}[/{session}]]`: answers `{count, etag}`.
    pub async fn put_backup_keys(
        self,
        user: &UserId,
        version: &str,
        scope: KeysScope<'_>,
        body: &Value,
    ) -> Result<Value> {
        let v = self.writable_version(user, version).await?;
        let mut keys = vec![];
        let sessions = |room: &str, sessions: &Value, keys: &mut Vec<BackupKey>| -> Result<()> {
            let map = sessions["sessions"]
                .as_object()
                .ok_or_else(|| Error::bad_json("sessions must be an object"))?;
            for (sid, data) in map {
                keys.push(parse_key(room, sid, data)?);
            }
            Ok(())
        };
        match scope {
            KeysScope::All => {
                let rooms = body["rooms"]
                    .as_object()
                    .ok_or_else(|| Error::bad_json("rooms must be an object"))?;
                for (room, s) in rooms {
                    sessions(room, s, &mut keys)?;
                }
            }
            KeysScope::Room(room) => sessions(room, body, &mut keys)?,
            KeysScope::Session(room, sid) => keys.push(parse_key(room, sid, body)?),
        }
        let (count, etag) = self
            .db
            .put_backup_keys(user.as_str(), v, keys, better)
            .await?
            .ok_or_else(|| no_version(version))?;
        Ok(json!({ "count": count, "etag": etag.to_string() }))
    }

    /// `GET /room_keys/keys[/{room}[/{session}]]`.
    pub async fn get_backup_keys(
        self,
        user: &UserId,
        version: &str,
        scope: KeysScope<'_>,
    ) -> Result<Value> {
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        if self
            .db
            .backup_version(user.as_str(), Some(v))
            .await?
            .is_none()
        {
            return Err(no_version(version));
        }
        let (room, session) = scope.parts();
        let keys = self.db.backup_keys(user.as_str(), v, room, session).await?;
        Ok(match scope {
            KeysScope::Session(..) => keys
                .first()
                .map(key_json)
                .ok_or_else(|| Error::not_found("No such session key in the backup"))?,
            KeysScope::Room(_) => {
                let sessions: Map<String, Value> = keys
                    .iter()
                    .map(|k| (k.session_id.clone(), key_json(k)))
                    .collect();
                json!({ "sessions": sessions })
            }
            KeysScope::All => {
                let mut rooms: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
                for k in &keys {
                    rooms
                        .entry(k.room_id.clone())
                        .or_default()
                        .insert(k.session_id.clone(), key_json(k));
                }
                let rooms: Map<String, Value> = rooms
                    .into_iter()
                    .map(|(r, s)| (r, json!({ "sessions": s })))
                    .collect();
                json!({ "rooms": rooms })
            }
        })
    }

    /// `DELETE /room_keys/keys[/{room}[/{session}]]`: answers `{count, etag}`.
    pub async fn delete_backup_keys(
        self,
        user: &UserId,
        version: &str,
        scope: KeysScope<'_>,
    ) -> Result<Value> {
        let v = parse_version(version).ok_or_else(|| no_version(version))?;
        let (room, session) = scope.parts();
        let (count, etag) = self
            .db
            .delete_backup_keys(user.as_str(), v, room, session)
            .await?
            .ok_or_else(|| no_version(version))?;
        Ok(json!({ "count": count, "etag": etag.to_string() }))
    }
}

/// (algorithm, auth_data as JSON text) of a version body.
fn backup_params(body: &Value) -> Result<(&str, String)> {
    let algorithm = body["algorithm"]
        .as_str()
        .filter(|a| !a.is_empty() && a.len() <= 255)
        .ok_or_else(|| Error::bad_json("algorithm must be a string"))?;
    if !body["auth_data"].is_object() {
        return Err(Error::bad_json("auth_data must be an object"));
    }
    let auth_data = serde_json::to_string(&body["auth_data"])?;
    if auth_data.len() > MAX_AUTH_DATA_BYTES {
        return Err(Error::too_large("auth_data too large"));
    }
    Ok((algorithm, auth_data))
}
