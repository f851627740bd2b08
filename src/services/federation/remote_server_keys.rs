//! Other servers' signing keys (spec: Retrieving server keys): fetched directly from the server
//! (or through the configured notaries), verified (self-signed, and notary-signed), cached until
//! their `valid_until_ts`; and the notary endpoint serving them to others with our signature.

use crate::services::federation::FederationFace;
use std::collections::BTreeMap;

use axum::http::Method;
use ruma::{
    serde::Base64,
    signatures::{sign_json, verify_json, PublicKeyMap, PublicKeySet},
    CanonicalJsonObject, CanonicalJsonValue, ServerName,
};
use serde_json::{json, Value};

use crate::{store::federation::ServerKeyRow, util, Error, Result};

/// A server key response older than this is refreshed even if still valid (half a day).
const REFRESH_MS: i64 = 12 * 3600 * 1000;
/// Keys are trusted at most this long after they were fetched (spec: 7 days).
const MAX_KEY_TRUST_MS: i64 = 7 * 24 * 3600 * 1000;

fn canonical(v: &Value) -> Option<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(v.clone()) {
        Ok(CanonicalJsonValue::Object(o)) => Some(o),
        _ => None,
    }
}

/// The keys of a `/_matrix/key/v2/server` response, after checking it is about `server`, still
/// valid, and signed by one of its own verify keys. Public so that the fuzz targets (`fuzz/`)
/// reach it.
pub fn verified_keys(
    server: &ServerName,
    resp: &Value,
    now: i64,
) -> Result<(Vec<ServerKeyRow>, i64)> {
    let bad = |m: &str| Error::unauthorized(format!("{server} keys: {m}"));
    if resp.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
        return Err(bad("wrong server_name"));
    }
    let valid_until = resp
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no valid_until_ts"))?;
    let mut rows = vec![];
    let mut own: PublicKeySet = BTreeMap::new();
    if let Some(keys) = resp.get("verify_keys").and_then(Value::as_object) {
        for (id, k) in keys {
            let Some(key) = k.get("key").and_then(Value::as_str) else {
                continue;
            };
            own.insert(id.clone(), Base64::parse(key).map_err(|_| bad("bad key"))?);
            rows.push(ServerKeyRow {
                key_id: id.clone(),
                public_key: key.to_owned(),
                valid_until_ts: valid_until,
                expired_ts: None,
            });
        }
    }
    if own.is_empty() {
        return Err(bad("no verify keys"));
    }
    if let Some(old) = resp.get("old_verify_keys").and_then(Value::as_object) {
        for (id, k) in old {
            if let (Some(key), Some(expired)) = (
                k.get("key").and_then(Value::as_str),
                k.get("expired_ts").and_then(Value::as_i64),
            ) {
                rows.push(ServerKeyRow {
                    key_id: id.clone(),
                    public_key: key.to_owned(),
                    valid_until_ts: expired,
                    expired_ts: Some(expired),
                });
            }
        }
    }
    let obj = canonical(resp).ok_or_else(|| bad("not canonical JSON"))?;
    let map: PublicKeyMap = BTreeMap::from([(server.to_string(), own)]);
    verify_json(&map, &obj).map_err(|e| bad(&format!("signature: {e}")))?;
    if valid_until < now {
        tracing::debug!(%server, "key response already expired; keys kept for old signatures");
    }
    Ok((rows, valid_until))
}

impl FederationFace<'_> {
    /// The verify keys of `server` valid at `at` (milliseconds), fetching them when the cache
    /// cannot answer.
    pub async fn server_verify_keys(
        self,
        server: &ServerName,
        key_ids: &[String],
        at: i64,
    ) -> Result<PublicKeySet> {
        if server == self.server_name {
            let mut set = PublicKeySet::new();
            set.insert(
                self.keys.key_id.clone(),
                Base64::parse(&self.keys.public_b64).map_err(|e| Error::unknown(e.to_string()))?,
            );
            return Ok(set);
        }
        let usable = |rows: &[ServerKeyRow]| -> Option<PublicKeySet> {
            let mut set = PublicKeySet::new();
            for id in key_ids {
                let row = rows.iter().find(|r| &r.key_id == id)?;
                let ok = match row.expired_ts {
                    Some(expired) => at < expired,
                    None => row.valid_until_ts >= at,
                };
                if !ok {
                    return None;
                }
                set.insert(id.clone(), Base64::parse(&row.public_key).ok()?);
            }
            Some(set)
        };
        let cached = self.db.server_keys(server.as_str()).await?;
        if let Some(set) = usable(&cached) {
            return Ok(set);
        }
        let no_key = || Error::unauthorized(format!("No valid key {key_ids:?} for {server}"));
        let limits = &self.federation_state.key_fetch;
        if key_ids
            .iter()
            .any(|id| limits.known_missing(server.as_str(), id))
        {
            return Err(no_key());
        }
        {
            let _slot = limits.slot(server.as_str()).await;
            // Another request may have fetched them while this one waited.
            let cached = self.db.server_keys(server.as_str()).await?;
            if let Some(set) = usable(&cached) {
                return Ok(set);
            }
            self.fetch_limited(server).await?;
        }
        let fresh = self.db.server_keys(server.as_str()).await?;
        if let Some(set) = usable(&fresh) {
            return Ok(set);
        }
        let absent: Vec<String> = key_ids
            .iter()
            .filter(|id| !fresh.iter().any(|r| &r.key_id == *id))
            .cloned()
            .collect();
        limits.remember_missing(server.as_str(), &absent);
        Err(no_key())
    }

    /// [`Self::fetch_limited`] once this server's fetch slot is ours.
    async fn fetch_in_slot(self, server: &ServerName) -> Result<Value> {
        let _slot = self.federation_state.key_fetch.slot(server.as_str()).await;
        self.fetch_limited(server).await
    }

    /// `fetch_server_keys` under the per-server limits (see key_fetch.rs): refused while the
    /// server was fetched too recently or is backed off after failures. The caller holds the
    /// server's fetch slot.
    async fn fetch_limited(self, server: &ServerName) -> Result<Value> {
        let limits = &self.federation_state.key_fetch;
        if !limits.may_fetch(server.as_str()) {
            return Err(Error::unauthorized(format!(
                "Keys of {server} were fetched recently; not asking again yet"
            )));
        }
        let res = self.fetch_server_keys(server).await;
        limits.fetched(server.as_str(), res.is_ok());
        res
    }

    /// Fetches, verifies and stores a server's keys: from the notaries first when configured,
    /// then from the server itself.
    pub(super) async fn fetch_server_keys(self, server: &ServerName) -> Result<Value> {
        let now = util::now_ms();
        for notary in &self.config.federation.trusted_key_servers {
            match self.keys_from_notary(notary, server, now).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(notary = %notary.server_name, %server, error = %e.message, "notary key query failed")
                }
            }
        }
        let resp = self
            .federation_request(server, Method::GET, "/_matrix/key/v2/server", None)
            .await?;
        self.store_key_response(server, &resp, now).await?;
        Ok(resp)
    }

    async fn store_key_response(self, server: &ServerName, resp: &Value, now: i64) -> Result<()> {
        let (mut rows, valid_until) = verified_keys(server, resp, now)?;
        // Spec: a key is trusted until the lesser of its valid_until_ts and 7 days after it was
        // fetched, so a stolen long-lived key cannot outlive its revocation by more than that.
        for r in rows.iter_mut().filter(|r| r.expired_ts.is_none()) {
            r.valid_until_ts = r.valid_until_ts.min(now.saturating_add(MAX_KEY_TRUST_MS));
        }
        // Old responses do not replace newer ones' validity beyond what they say.
        self.db
            .store_server_keys(
                server.as_str(),
                &rows,
                &serde_json::to_string(resp)?,
                valid_until,
                now,
            )
            .await?;
        Ok(())
    }

    async fn keys_from_notary(
        self,
        notary: &crate::config::TrustedKeyServer,
        server: &ServerName,
        now: i64,
    ) -> Result<Value> {
        let notary_name = ServerName::parse(&notary.server_name)
            .map_err(|e| Error::unknown(format!("trusted key server name: {e}")))?;
        let body = json!({ "server_keys": { server.as_str(): {} } });
        let resp = self
            .federation_request(
                &notary_name,
                Method::POST,
                "/_matrix/key/v2/query",
                Some(&body),
            )
            .await?;
        let mut notary_keys = PublicKeySet::new();
        for (id, key) in &notary.verify_keys {
            notary_keys.insert(
                id.clone(),
                Base64::parse(key).map_err(|_| Error::unknown("bad trusted key"))?,
            );
        }
        let map: PublicKeyMap = BTreeMap::from([(notary.server_name.clone(), notary_keys)]);
        let list = resp["server_keys"].as_array().cloned().unwrap_or_default();
        for entry in list {
            if entry.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
                continue;
            }
            let obj = canonical(&entry).ok_or_else(|| Error::unauthorized("bad notary answer"))?;
            verify_json(&map, &obj)
                .map_err(|e| Error::unauthorized(format!("notary signature: {e}")))?;
            self.store_key_response(server, &entry, now).await?;
            return Ok(entry);
        }
        Err(Error::not_found("The notary has no keys for that server"))
    }

    /// Notary: signed key responses of the requested servers, with our signature added.
    /// `min_valid` asks for responses valid at least until then.
    pub async fn notary_keys(self, servers: &[(String, i64)]) -> Result<Value> {
        let now = util::now_ms();
        let mut out = vec![];
        for (name, min_valid) in servers.iter().take(100) {
            let Ok(server) = ServerName::parse(name) else {
                continue;
            };
            let resp = if server == self.server_name {
                Some(self.keys.server_key_response(
                    name,
                    now,
                    self.config.federation.key_validity_secs,
                ))
            } else {
                let cached = self.db.server_key_response(name).await?;
                let fresh_enough = cached
                    .as_ref()
                    .is_some_and(|(_, until)| *until >= (*min_valid).max(now + REFRESH_MS));
                match (fresh_enough, cached) {
                    (true, Some((json, _))) => serde_json::from_str(&json).ok(),
                    (_, cached) => match self.fetch_in_slot(&server).await {
                        Ok(v) => Some(v),
                        // Unreachable: what we have is better than nothing.
                        Err(_) => cached.and_then(|(json, _)| serde_json::from_str(&json).ok()),
                    },
                }
            };
            let Some(resp) = resp else { continue };
            let Some(mut obj) = canonical(&resp) else {
                continue;
            };
            if server != self.server_name
                && sign_json(self.server_name.as_str(), &self.keys.pair, &mut obj).is_err()
            {
                continue;
            }
            out.push(serde_json::to_value(obj)?);
        }
        Ok(json!({ "server_keys": out }))
    }
}
