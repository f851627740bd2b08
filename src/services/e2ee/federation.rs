//! Keys over federation (spec: Server-server API, Device Management and End-to-End
//! Encryption): this server's users' device lists and keys for other servers, and the keys of
//! other servers' users for this server's clients.
//!
//! Remote device and cross-signing keys answered to `/keys/query` are cached per user
//! (`remote_device_lists`, `remote_device_keys`, `remote_cross_signing_keys`). A cached user is
//! served from the cache for `REMOTE_KEYS_FRESH_MS`, then asked again; device-list EDUs will call
//! `invalidate_remote_device_cache` when a user's devices change. When their server cannot be
//! reached, an older cached copy is served rather than nothing.

use crate::services::e2ee::E2eeFace;
use ruma::{
    api::federation::keys::{claim_keys, get_keys},
    OneTimeKeyAlgorithm, OwnedDeviceId,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use futures_util::future::join_all;
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{json, Map, Value};

use super::device_keys::{device_list, KeysAnswer};
use crate::{
    store::e2ee_keys::{RemoteKeys, Target},
    util, Error, Result,
};

/// How long a remote user's cached keys are served without asking their server.
pub const REMOTE_KEYS_FRESH_MS: i64 = 5 * 60 * 1000;
/// Most users or targets accepted in one federation key request.
const MAX_FEDERATION_QUERY: usize = 10_000;
/// Most devices kept per remote user.
const MAX_REMOTE_DEVICES: usize = 1_000;

/// A `failures` entry for a server.
fn failure(e: &Error) -> Value {
    json!({ "status": e.status.as_u16(), "message": e.message })
}

/// Bounds a client's `timeout` (milliseconds, default 10 s) for requests to other servers.
pub fn remote_timeout(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(10_000).clamp(100, 60_000))
}

/// The keys in a `/user/keys/query` answer that belong to users that were asked: devices that
/// name their user and device, cross-signing keys that name their user.
fn parse_remote_keys(asked: &HashSet<&str>, v: &Value) -> RemoteKeys {
    let mut out = RemoteKeys::default();
    if let Some(users) = v["device_keys"].as_object() {
        for (user, devices) in users {
            if !asked.contains(user.as_str()) {
                continue;
            }
            let Some(devices) = devices.as_object() else {
                continue;
            };
            for (device, keys) in devices.iter().take(MAX_REMOTE_DEVICES) {
                if keys["user_id"].as_str() == Some(user)
                    && keys["device_id"].as_str() == Some(device)
                    && device.len() <= 255
                {
                    out.devices
                        .push((user.clone(), device.clone(), keys.to_string()));
                }
            }
        }
    }
    for (kind, field) in [
        ("master", "master_keys"),
        ("self_signing", "self_signing_keys"),
    ] {
        if let Some(keys) = v[field].as_object() {
            for (user, key) in keys {
                if asked.contains(user.as_str()) && key["user_id"].as_str() == Some(user) {
                    out.cross_signing
                        .push((user.clone(), kind.to_owned(), key.to_string()));
                }
            }
        }
    }
    out
}

impl E2eeFace<'_> {
    /// Forgets what is cached about a remote user's devices and cross-signing keys: the next
    /// `/keys/query` asks their server. For device-list updates from that server.
    pub async fn invalidate_remote_device_cache(self, user: &UserId) -> Result<()> {
        Ok(self.db.forget_remote_keys(&[user.to_string()]).await?)
    }

    /// Adds the keys of remote users to `answer` (from the cache or their servers); the
    /// servers that could not answer for users with nothing cached.
    pub(super) async fn remote_keys(
        self,
        remote: BTreeMap<OwnedServerName, Vec<(OwnedUserId, Vec<String>)>>,
        timeout: Duration,
        answer: &mut KeysAnswer,
    ) -> Result<Map<String, Value>> {
        let mut failures = Map::new();
        if remote.is_empty() {
            return Ok(failures);
        }
        let users: Vec<String> = remote
            .values()
            .flatten()
            .map(|(u, _)| u.to_string())
            .collect();
        let now = util::now_ms();
        let ages: HashMap<String, i64> = self
            .db
            .remote_device_list_ages(&users)
            .await?
            .into_iter()
            .collect();
        let fresh = |u: &str| {
            ages.get(u)
                .is_some_and(|t| *t >= now - REMOTE_KEYS_FRESH_MS)
        };
        // One request per server for its users without a fresh copy, all servers at once.
        let asks: Vec<(&OwnedServerName, Vec<String>)> = remote
            .iter()
            .map(|(server, list)| {
                let stale: Vec<String> = list
                    .iter()
                    .map(|(u, _)| u.to_string())
                    .filter(|u| !fresh(u))
                    .collect();
                (server, stale)
            })
            .filter(|(_, stale)| !stale.is_empty())
            .collect();
        let results = join_all(asks.iter().map(|(server, stale)| {
            let users = stale
                .iter()
                .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
                .map(|u| (u, vec![]))
                .collect();
            let request = get_keys::v1::Request::new(users);
            async move {
                match tokio::time::timeout(timeout, self.federation().call(server, request)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::gateway_timeout(format!(
                        "{server} did not answer in time"
                    ))),
                }
            }
        }))
        .await;
        let mut unanswered: HashSet<String> = HashSet::new();
        for ((server, stale), res) in asks.iter().zip(results) {
            match res {
                Ok(v) => {
                    let asked: HashSet<&str> = stale.iter().map(String::as_str).collect();
                    let keys = parse_remote_keys(&asked, &v);
                    self.db.put_remote_keys(stale, &keys, now).await?;
                }
                Err(e) => {
                    tracing::info!(%server, error = %e.message, "remote key query failed");
                    // Users with an older copy are still answered from it.
                    let missing = stale.iter().filter(|u| !ages.contains_key(*u));
                    let mut any = false;
                    for u in missing {
                        unanswered.insert(u.clone());
                        any = true;
                    }
                    if any {
                        failures.insert(server.to_string(), failure(&e));
                    }
                }
            }
        }
        let served: Vec<String> = users
            .into_iter()
            .filter(|u| !unanswered.contains(u))
            .collect();
        let cached = self.db.remote_keys_of(&served).await?;
        let filters: HashMap<String, HashSet<&str>> = remote
            .values()
            .flatten()
            .map(|(u, d)| (u.to_string(), d.iter().map(String::as_str).collect()))
            .collect();
        for u in &served {
            answer.device_keys.entry(u.clone()).or_default();
        }
        for (user, device, json) in cached.devices {
            let Some(filter) = filters.get(&user) else {
                continue;
            };
            if !filter.is_empty() && !filter.contains(device.as_str()) {
                continue;
            }
            let v: Value = serde_json::from_str(&json)?;
            answer
                .device_keys
                .entry(user)
                .or_default()
                .insert(device, v);
        }
        for (user, kind, json) in cached.cross_signing {
            let v: Value = serde_json::from_str(&json)?;
            match kind.as_str() {
                "master" => answer.master_keys.insert(user, v),
                _ => answer.self_signing_keys.insert(user, v),
            };
        }
        Ok(failures)
    }

    /// Claims keys of remote devices from their servers (one request per server, in
    /// parallel) into `out`; the servers that failed.
    pub(super) async fn claim_remote_keys(
        self,
        remote: BTreeMap<OwnedServerName, Vec<Target>>,
        timeout: Duration,
        out: &mut BTreeMap<String, Map<String, Value>>,
    ) -> Map<String, Value> {
        let mut failures = Map::new();
        let results = join_all(remote.iter().map(|(server, targets)| {
            let mut claims: claim_keys::v1::OneTimeKeyClaims = BTreeMap::new();
            for (u, d, a) in targets {
                if let Ok(u) = OwnedUserId::try_from(u.as_str()) {
                    claims.entry(u).or_default().insert(
                        OwnedDeviceId::from(d.as_str()),
                        OneTimeKeyAlgorithm::from(a.as_str()),
                    );
                }
            }
            let request = claim_keys::v1::Request::new(claims);
            async move {
                match tokio::time::timeout(timeout, self.federation().call(server, request)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::gateway_timeout(format!(
                        "{server} did not answer in time"
                    ))),
                }
            }
        }))
        .await;
        for ((server, targets), res) in remote.iter().zip(results) {
            match res {
                Ok(v) => {
                    // Only keys of the devices asked for.
                    let asked: HashSet<(&str, &str)> = targets
                        .iter()
                        .map(|(u, d, _)| (u.as_str(), d.as_str()))
                        .collect();
                    let Some(users) = v["one_time_keys"].as_object() else {
                        continue;
                    };
                    for (user, devices) in users {
                        let Some(devices) = devices.as_object() else {
                            continue;
                        };
                        for (device, keys) in devices {
                            if asked.contains(&(user.as_str(), device.as_str())) && keys.is_object()
                            {
                                out.entry(user.clone())
                                    .or_default()
                                    .insert(device.clone(), keys.clone());
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(%server, error = %e.message, "remote key claim failed");
                    failures.insert(server.to_string(), failure(&e));
                }
            }
        }
        failures
    }

    /// `GET /_matrix/federation/v1/user/devices/{userId}`: a local user's devices with keys,
    /// their device-list position and cross-signing keys.
    pub async fn federation_user_devices(self, user: &UserId) -> Result<Value> {
        if !self.is_local(user) {
            return Err(Error::invalid_param("That user is not on this server"));
        }
        let names = self.config.federation.device_names_over_federation;
        let mut answer = self
            .local_keys(&[(user.to_owned(), vec![])], None, names)
            .await?;
        let stream_id = self.db.device_list_position(user.as_str()).await?;
        let devices: Vec<Value> = answer
            .device_keys
            .remove(user.as_str())
            .unwrap_or_default()
            .into_iter()
            .map(|(device_id, mut keys)| {
                let mut d = json!({ "device_id": device_id });
                if let Some(name) = keys
                    .get_mut("unsigned")
                    .and_then(|u| u.as_object_mut())
                    .and_then(|u| u.remove("device_display_name"))
                {
                    d["device_display_name"] = name;
                }
                if keys["unsigned"].as_object().is_some_and(Map::is_empty) {
                    if let Some(k) = keys.as_object_mut() {
                        k.remove("unsigned");
                    }
                }
                d["keys"] = keys;
                d
            })
            .collect();
        let mut out = json!({
            "user_id": user,
            "stream_id": stream_id,
            "devices": devices,
        });
        if let Some(k) = answer.master_keys.remove(user.as_str()) {
            out["master_key"] = k;
        }
        if let Some(k) = answer.self_signing_keys.remove(user.as_str()) {
            out["self_signing_key"] = k;
        }
        Ok(out)
    }

    /// `POST /_matrix/federation/v1/user/keys/query`: keys of this server's users (others are
    /// ignored), with the owners' own signatures only.
    pub async fn federation_query_keys(
        self,
        origin: &ServerName,
        wanted: &Map<String, Value>,
    ) -> Result<Value> {
        if wanted.len() > MAX_FEDERATION_QUERY {
            return Err(Error::invalid_param("Too many users in one query"));
        }
        let mut local = vec![];
        for (user, devices) in wanted {
            let Ok(uid) = UserId::parse(user) else {
                continue;
            };
            if self.is_local(&uid) {
                local.push((uid, device_list(devices)?));
            }
        }
        tracing::debug!(%origin, users = local.len(), "federation key query");
        let names = self.config.federation.device_names_over_federation;
        let answer = self.local_keys(&local, None, names).await?;
        Ok(json!({
            "device_keys": answer.device_keys,
            "master_keys": answer.master_keys,
            "self_signing_keys": answer.self_signing_keys,
        }))
    }

    /// `POST /_matrix/federation/v1/user/keys/claim`: one key per asked device of this
    /// server's users (others are ignored).
    pub async fn federation_claim_keys(self, wanted: &Map<String, Value>) -> Result<Value> {
        let mut targets: Vec<Target> = vec![];
        for (user, devices) in wanted {
            let Ok(uid) = UserId::parse(user) else {
                continue;
            };
            if !self.is_local(&uid) {
                continue;
            }
            let devices = devices
                .as_object()
                .ok_or_else(|| Error::bad_json("one_time_keys values must be objects"))?;
            for (device, alg) in devices {
                let alg = alg
                    .as_str()
                    .filter(|a| !a.is_empty() && a.len() <= 128)
                    .ok_or_else(|| Error::bad_json("Algorithm must be a string"))?;
                targets.push((user.clone(), device.clone(), alg.to_owned()));
                if targets.len() > MAX_FEDERATION_QUERY {
                    return Err(Error::invalid_param("Too many keys in one claim"));
                }
            }
        }
        let out = self.claim_local_keys(targets).await?;
        Ok(json!({ "one_time_keys": out }))
    }
}
