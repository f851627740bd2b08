//! Device keys, one-time keys and fallback keys: `/keys/upload`, `/keys/query`, `/keys/claim`.

use crate::services::e2ee::E2eeFace;
use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use super::{cross_signing_public_key, verify_signature};
use crate::services::federation::edus::DeviceChange;
use crate::{
    store::{e2ee_keys::Target, Db},
    Error, Result,
};

/// Longest key id or algorithm accepted.
const MAX_KEY_ID: usize = 128;

/// What `/keys/upload` carries.
#[derive(Default)]
pub struct KeyUpload {
    pub device_keys: Option<Value>,
    pub one_time_keys: Map<String, Value>,
    pub fallback_keys: Map<String, Value>,
}

impl KeyUpload {
    pub fn from_json(body: &Value) -> Result<Self> {
        let map = |field: &str| -> Result<Map<String, Value>> {
            match &body[field] {
                Value::Null => Ok(Map::new()),
                Value::Object(m) => Ok(m.clone()),
                _ => Err(Error::bad_json(format!("{field} must be an object"))),
            }
        };
        let device_keys = match &body["device_keys"] {
            Value::Null => None,
            v @ Value::Object(_) => Some(v.clone()),
            _ => return Err(Error::bad_json("device_keys must be an object")),
        };
        Ok(Self {
            device_keys,
            one_time_keys: map("one_time_keys")?,
            // `org.matrix.msc2732.fallback_keys` was the unstable name.
            fallback_keys: match map("fallback_keys")? {
                m if m.is_empty() => map("org.matrix.msc2732.fallback_keys")?,
                m => m,
            },
        })
    }
}

/// `algorithm:id` split, both parts checked.
fn split_key_id(full: &str) -> Result<(&str, &str)> {
    match full.split_once(':') {
        Some((alg, id)) if !alg.is_empty() && !id.is_empty() && full.len() <= MAX_KEY_ID => {
            Ok((alg, id))
        }
        _ => Err(Error::bad_json(format!("Invalid key id {full:?}"))),
    }
}

/// A one-time or fallback key is an unpadded base64 string or a signed object with `key`.
fn check_key_value(id: &str, v: &Value) -> Result<()> {
    let ok = match v {
        Value::String(s) => !s.is_empty(),
        Value::Object(o) => o.get("key").and_then(Value::as_str).is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::bad_json(format!("Invalid key {id:?}")))
    }
}

/// The checks a device's own key upload must pass: it names the device, and the device's
/// Ed25519 key signed it.
pub fn check_device_keys(keys: &Value, user: &UserId, device: &str) -> Result<()> {
    if keys["user_id"].as_str() != Some(user.as_str()) {
        return Err(Error::invalid_param(
            "device_keys.user_id does not match the authenticated user",
        ));
    }
    if keys["device_id"].as_str() != Some(device) {
        return Err(Error::invalid_param(
            "device_keys.device_id does not match the authenticated device",
        ));
    }
    if !keys["algorithms"]
        .as_array()
        .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(Error::bad_json(
            "device_keys.algorithms must be a list of strings",
        ));
    }
    let key_id = format!("ed25519:{device}");
    let ed25519 = keys["keys"][&key_id]
        .as_str()
        .ok_or_else(|| Error::bad_json(format!("device_keys.keys lacks {key_id}")))?;
    if !keys["keys"]
        .as_object()
        .is_some_and(|k| k.values().all(Value::is_string))
    {
        return Err(Error::bad_json("device_keys.keys values must be strings"));
    }
    verify_signature(keys, user.as_str(), &key_id, ed25519).map_err(Error::invalid_param)
}

impl E2eeFace<'_> {
    /// `/keys/upload` for (user, device); answers the one-time key counts.
    pub async fn upload_keys(self, user: &UserId, device: &str, up: KeyUpload) -> Result<Value> {
        if let Some(k) = &up.device_keys {
            check_device_keys(k, user, device)?;
        }
        let mut otks = Vec::with_capacity(up.one_time_keys.len());
        for (full, v) in &up.one_time_keys {
            let (alg, _) = split_key_id(full)?;
            check_key_value(full, v)?;
            otks.push((alg.to_owned(), full.clone(), serde_json::to_string(v)?));
        }
        let mut fallbacks: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (full, v) in &up.fallback_keys {
            let (alg, _) = split_key_id(full)?;
            check_key_value(full, v)?;
            fallbacks.insert(alg.to_owned(), (full.clone(), serde_json::to_string(v)?));
        }

        let device_json = up
            .device_keys
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let old = match &up.device_keys {
            Some(_) => self.db.get_device_keys(user.as_str(), device).await?,
            None => None,
        };
        let mut changed = false;
        if let (Some(new), Some(old)) = (&up.device_keys, &old) {
            let old: Value = serde_json::from_str(old)?;
            if old["keys"] != new["keys"] {
                return Err(Error::invalid_param(
                    "This device already has different keys: log in as a new device",
                ));
            }
            changed = old != *new;
        } else if up.device_keys.is_some() {
            changed = true;
        }

        let ticket = match changed {
            true => Some(self.device_list_ticket().await?),
            false => None,
        };
        let res: Result<()> = async {
            let mut tx = self.db.begin_write().await?;
            if let (Some(json), true) = (&device_json, changed) {
                Db::put_device_keys(&mut tx.tx, user.as_str(), device, json).await?;
            }
            if !otks.is_empty() {
                let ids: Vec<(String, String)> = otks
                    .iter()
                    .map(|(a, id, _)| (a.clone(), id.clone()))
                    .collect();
                let existing =
                    Db::existing_one_time_keys(&mut tx.tx, user.as_str(), device, &ids).await?;
                let by_id: HashMap<&str, &str> = existing
                    .iter()
                    .map(|(_, id, json)| (id.as_str(), json.as_str()))
                    .collect();
                for (_, id, json) in &otks {
                    if by_id.get(id.as_str()).is_some_and(|old| old != json) {
                        return Err(Error::invalid_param(format!(
                            "One-time key {id} already exists with a different value"
                        )));
                    }
                }
                Db::insert_one_time_keys(&mut tx.tx, user.as_str(), device, &otks).await?;
            }
            for (alg, (id, json)) in &fallbacks {
                Db::put_fallback_key(&mut tx.tx, user.as_str(), device, alg, id, json).await?;
            }
            if let Some(t) = &ticket {
                Db::add_device_list_changes(&mut tx.tx, t.id, &[user.to_string()]).await?;
                self.db
                    .finish_positions(&mut tx.tx, t.finish().as_ref())
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        res?;
        if let Some(t) = ticket {
            let id = t.id;
            t.publish(&[user]).await;
            let devices = [device.to_owned()];
            self.federation()
                .federate_device_change(user, id, DeviceChange::Devices(&devices))
                .await;
        }
        let (counts, _) = self.key_counts(user, device).await?;
        Ok(json!({ "one_time_key_counts": counts }))
    }

    /// (one-time key counts per algorithm, algorithms with an unused fallback key). The count
    /// of `signed_curve25519` is always present, as clients expect.
    pub async fn key_counts(self, user: &UserId, device: &str) -> Result<(Value, Vec<String>)> {
        let mut counts = Map::new();
        counts.insert("signed_curve25519".into(), json!(0));
        let mut fallback = vec![];
        for (alg, n, is_fallback) in self.db.key_counts(user.as_str(), device).await? {
            if is_fallback == 1 {
                fallback.push(alg);
            } else {
                counts.insert(alg, json!(n));
            }
        }
        Ok((Value::Object(counts), fallback))
    }

    /// `/keys/query`: device and cross-signing keys of local users, as seen by `requester`, and
    /// of remote users, from the cache or asked of their servers (at most `timeout` each, in
    /// parallel; unreachable ones are listed in `failures`).
    pub async fn query_keys(
        self,
        requester: &UserId,
        wanted: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<Value> {
        let mut local: Vec<(OwnedUserId, Vec<String>)> = vec![];
        let mut remote: BTreeMap<OwnedServerName, Vec<(OwnedUserId, Vec<String>)>> =
            BTreeMap::new();
        for (user, devices) in wanted {
            let user = crate::util::parse_user_id(user)?;
            let devices = device_list(devices)?;
            if self.is_local(&user) {
                local.push((user, devices));
            } else {
                remote
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .push((user, devices));
            }
        }
        let mut answer = self.local_keys(&local, Some(requester), true).await?;
        let failures = self.remote_keys(remote, timeout, &mut answer).await?;
        Ok(json!({
            "device_keys": answer.device_keys,
            "master_keys": answer.master_keys,
            "self_signing_keys": answer.self_signing_keys,
            "user_signing_keys": answer.user_signing_keys,
            "failures": failures,
        }))
    }

    /// The keys of local users as `viewer` sees them (`None`: another server, which gets the
    /// owners' own signatures only and no user-signing keys). `names`: devices carry their
    /// display names in `unsigned`.
    pub(super) async fn local_keys(
        self,
        local: &[(OwnedUserId, Vec<String>)],
        viewer: Option<&UserId>,
        names: bool,
    ) -> Result<KeysAnswer> {
        let users: Vec<String> = local.iter().map(|(u, _)| u.to_string()).collect();
        let keys = self.db.device_keys_of(&users).await?;
        let cross = self.db.cross_signing_keys_of(&users).await?;
        let sigs = self.db.signatures_on(&users).await?;

        // Signatures visible to the viewer: the owner's own (self-signing key over devices,
        // devices over the master key) and the viewer's (user-signing key over a master key).
        type Target<'a> = (&'a str, &'a str);
        type Signed<'a> = (&'a str, &'a str, &'a str);
        let mut extra: HashMap<Target, Vec<Signed>> = HashMap::new();
        for (tu, tk, su, sk, sig) in &sigs {
            if su == tu || viewer.is_some_and(|v| su == v.as_str()) {
                extra.entry((tu.as_str(), tk.as_str())).or_default().push((
                    su.as_str(),
                    sk.as_str(),
                    sig.as_str(),
                ));
            }
        }
        let merge = |v: &mut Value, user: &str, target: &str| {
            if let Some(list) = extra.get(&(user, target)) {
                for (su, sk, sig) in list {
                    v["signatures"][*su][*sk] = json!(sig);
                }
            }
        };

        let wanted_devices: HashMap<&str, HashSet<&str>> = local
            .iter()
            .map(|(u, d)| (u.as_str(), d.iter().map(String::as_str).collect()))
            .collect();
        let mut answer = KeysAnswer {
            device_keys: local
                .iter()
                .map(|(u, _)| (u.to_string(), Map::new()))
                .collect(),
            ..Default::default()
        };
        for (user, device, json, name) in keys {
            let filter = &wanted_devices[user.as_str()];
            if !filter.is_empty() && !filter.contains(device.as_str()) {
                continue;
            }
            let mut v: Value = serde_json::from_str(&json)?;
            merge(&mut v, &user, &device);
            if let (Some(name), true) = (name, names) {
                v["unsigned"]["device_display_name"] = json!(name);
            }
            if let Some(m) = answer.device_keys.get_mut(&user) {
                m.insert(device, v);
            }
        }
        for (user, kind, json) in cross {
            let mut v: Value = serde_json::from_str(&json)?;
            if let Some(public) = cross_signing_public_key(&v) {
                merge(&mut v, &user, &public);
            }
            match kind.as_str() {
                "master" => {
                    answer.master_keys.insert(user, v);
                }
                "self_signing" => {
                    answer.self_signing_keys.insert(user, v);
                }
                "user_signing" if viewer.is_some_and(|v| v.as_str() == user) => {
                    answer.user_signing_keys.insert(user, v);
                }
                _ => {}
            }
        }
        Ok(answer)
    }

    /// `/keys/claim`: one key per (user, device, algorithm). A one-time key is handed out exactly
    /// once; when a device has none left, its fallback key (marked used) is. Keys of remote
    /// users are claimed from their servers (at most `timeout` each, in parallel).
    pub async fn claim_keys(
        self,
        wanted: &Map<String, Value>,
        timeout: std::time::Duration,
    ) -> Result<Value> {
        let mut targets: Vec<Target> = vec![];
        let mut remote: BTreeMap<OwnedServerName, Vec<Target>> = BTreeMap::new();
        for (user, devices) in wanted {
            let uid = crate::util::parse_user_id(user)?;
            let devices = devices
                .as_object()
                .ok_or_else(|| Error::bad_json("one_time_keys values must be objects"))?;
            for (device, alg) in devices {
                let alg = alg
                    .as_str()
                    .filter(|a| !a.is_empty() && a.len() <= MAX_KEY_ID)
                    .ok_or_else(|| Error::bad_json("Algorithm must be a string"))?;
                let target = (user.clone(), device.clone(), alg.to_owned());
                if self.is_local(&uid) {
                    targets.push(target);
                } else {
                    remote
                        .entry(uid.server_name().to_owned())
                        .or_default()
                        .push(target);
                }
            }
        }
        let mut out = self.claim_local_keys(targets).await?;
        let failures = self.claim_remote_keys(remote, timeout, &mut out).await;
        Ok(json!({ "one_time_keys": out, "failures": failures }))
    }

    /// Claims keys of local devices: user -> device -> key id -> key.
    pub(super) async fn claim_local_keys(
        self,
        mut targets: Vec<Target>,
    ) -> Result<BTreeMap<String, Map<String, Value>>> {
        targets.sort();
        targets.dedup();
        let claimed = self.db.claim_keys(targets).await?;
        let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (user, device, _, key_id, json) in claimed {
            let v: Value = serde_json::from_str(&json)?;
            out.entry(user)
                .or_default()
                .entry(device)
                .or_insert_with(|| json!({}))[key_id] = v;
        }
        Ok(out)
    }
}

/// The device ids asked for a user in a key query (empty: all).
pub fn device_list(devices: &Value) -> Result<Vec<String>> {
    match devices {
        Value::Array(a) => Ok(a
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect()),
        Value::Null => Ok(vec![]),
        _ => Err(Error::bad_json("device_keys values must be lists")),
    }
}

/// A key query's answer, before it becomes JSON.
#[derive(Default)]
pub struct KeysAnswer {
    pub device_keys: BTreeMap<String, Map<String, Value>>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    pub user_signing_keys: Map<String, Value>,
}
