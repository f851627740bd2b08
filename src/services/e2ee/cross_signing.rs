//! Cross-signing: `/keys/device_signing/upload` and `/keys/signatures/upload`.

use crate::services::e2ee::E2eeFace;
use std::collections::HashMap;

use ruma::UserId;
use serde_json::{json, Map, Value};

use super::{cross_signing_public_key, signed_bytes, verify_signature};
use crate::services::federation::edus::DeviceChange;
use crate::{
    services::requester::{AuthData, Requester},
    store::{e2ee_keys::SignatureRow, Db},
    Error, Result,
};

const KINDS: [(&str, &str); 3] = [
    ("master_key", "master"),
    ("self_signing_key", "self_signing"),
    ("user_signing_key", "user_signing"),
];

fn failure(errcode: &str, error: impl Into<String>) -> Value {
    json!({ "errcode": errcode, "error": error.into() })
}

impl E2eeFace<'_> {
    /// Stored cross-signing keys of a user, by kind.
    async fn cross_signing_keys(self, user: &UserId) -> Result<HashMap<String, Value>> {
        let mut out = HashMap::new();
        for (_, kind, json) in self.db.cross_signing_keys_of(&[user.to_string()]).await? {
            out.insert(kind, serde_json::from_str(&json)?);
        }
        Ok(out)
    }

    /// `/keys/device_signing/upload`. UIA (password) is asked unless the user has no master key
    /// yet or re-uploads exactly the keys already stored (spec v1.11).
    pub async fn upload_cross_signing_keys(
        self,
        r: &Requester,
        body: &Value,
        auth: Option<AuthData>,
    ) -> Result<()> {
        crate::services::accounts::check_uia_session(auth.as_ref())?;
        let user = r.user_id.as_str();
        let mut new: Vec<(&str, Value, String)> = vec![];
        for (field, kind) in KINDS {
            match &body[field] {
                Value::Null => {}
                v @ Value::Object(_) => {
                    if v["user_id"].as_str() != Some(user) {
                        return Err(Error::invalid_param(format!(
                            "{field}.user_id does not match the authenticated user"
                        )));
                    }
                    if !v["usage"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(kind)))
                    {
                        return Err(Error::invalid_param(format!(
                            "{field}.usage must include {kind}"
                        )));
                    }
                    let public = cross_signing_public_key(v).ok_or_else(|| {
                        Error::invalid_param(format!(
                            "{field}.keys must hold one ed25519:<public key> entry"
                        ))
                    })?;
                    new.push((kind, v.clone(), public));
                }
                _ => return Err(Error::bad_json(format!("{field} must be an object"))),
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let stored = self.cross_signing_keys(&r.user_id).await?;
        let unchanged = new
            .iter()
            .all(|(kind, v, _)| stored.get(*kind).is_some_and(|old| old == v));
        if unchanged {
            return Ok(());
        }
        if stored.contains_key("master") && !self.replaceable_without_uia(user).await? {
            self.accounts().uia_password(r, auth).await?;
        }
        let master = match new.iter().find(|(k, _, _)| *k == "master") {
            Some((_, _, public)) => public.clone(),
            None => stored
                .get("master")
                .and_then(cross_signing_public_key)
                .ok_or_else(|| Error::invalid_param("No master key: upload one first"))?,
        };
        for (kind, v, _) in &new {
            if *kind != "master" {
                verify_signature(v, user, &format!("ed25519:{master}"), &master)
                    .map_err(|e| Error::invalid_param(format!("{kind} key: {e}")))?;
            }
        }
        let ticket = self.device_list_ticket().await?;
        let res: Result<()> = async {
            let mut tx = self.db.begin_write().await?;
            for (kind, v, public) in &new {
                Db::put_cross_signing_key(
                    &mut tx.tx,
                    user,
                    kind,
                    public,
                    &serde_json::to_string(v)?,
                )
                .await?;
            }
            Db::add_device_list_changes(&mut tx.tx, ticket.id, &[user.to_owned()]).await?;
            self.db
                .finish_positions(&mut tx.tx, ticket.finish().as_ref())
                .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        res?;
        let id = ticket.id;
        ticket.publish(&[&r.user_id]).await;
        if new.iter().any(|(kind, _, _)| *kind != "user_signing") {
            self.federation()
                .federate_device_change(&r.user_id, id, DeviceChange::SigningKeys)
                .await;
        }
        Ok(())
    }

    /// `/keys/signatures/upload`: every signature is verified; good ones are stored, bad ones
    /// reported in `failures`.
    pub async fn upload_signatures(
        self,
        r: &Requester,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        let me = r.user_id.as_str();
        let mut users: Vec<String> = vec![me.to_owned()];
        for u in body.keys() {
            crate::util::parse_user_id(u)?;
            users.push(u.clone());
        }
        users.sort();
        users.dedup();
        let device_keys: HashMap<(String, String), Value> = self
            .db
            .device_keys_of(&users)
            .await?
            .into_iter()
            .filter_map(|(u, d, json, _)| Some(((u, d), serde_json::from_str(&json).ok()?)))
            .collect();
        let mut cross: HashMap<(String, String), Value> = HashMap::new();
        for (u, kind, json) in self.db.cross_signing_keys_of(&users).await? {
            cross.insert((u, kind), serde_json::from_str(&json)?);
        }
        let ctx = SigContext {
            me,
            device_keys: &device_keys,
            cross: &cross,
        };
        let mut rows: Vec<SignatureRow> = vec![];
        let mut failures: Map<String, Value> = Map::new();
        for (target_user, keys) in body {
            let Some(keys) = keys.as_object() else {
                return Err(Error::bad_json(
                    "Signed keys must be grouped in objects by key id",
                ));
            };
            for (key_id, signed) in keys {
                match ctx.check(target_user, key_id, signed) {
                    Ok(mut good) => rows.append(&mut good),
                    Err(f) => {
                        failures
                            .entry(target_user.clone())
                            .or_insert_with(|| json!({}))[key_id] = f;
                    }
                }
            }
        }
        if !rows.is_empty() {
            let ticket = self.device_list_ticket().await?;
            let res: Result<()> = async {
                let mut tx = self.db.begin_write().await?;
                Db::put_signatures(&mut tx.tx, &rows).await?;
                Db::add_device_list_changes(&mut tx.tx, ticket.id, &[me.to_owned()]).await?;
                // The signer's own devices re-read the keys he signed (and so see them
                // verified); nobody else learns of the signature (Synapse's
                // notify_user_signature_update).
                let mut targets: Vec<String> = rows
                    .iter()
                    .filter(|row| row.0 != me)
                    .map(|row| row.0.clone())
                    .collect();
                targets.sort();
                targets.dedup();
                Db::add_signature_changes(&mut tx.tx, ticket.id, me, &targets).await?;
                self.db
                    .finish_positions(&mut tx.tx, ticket.finish().as_ref())
                    .await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            res?;
            let id = ticket.id;
            ticket.publish(&[&r.user_id]).await;
            // The user's own devices and master key gained signatures: other servers re-read
            // them (signatures of other users' keys stay private).
            let mut devices: Vec<String> = rows
                .iter()
                .filter(|row| {
                    row.0 == me && device_keys.contains_key(&(row.0.clone(), row.1.clone()))
                })
                .map(|row| row.1.clone())
                .collect();
            devices.sort();
            devices.dedup();
            if !devices.is_empty() {
                self.federation()
                    .federate_device_change(&r.user_id, id, DeviceChange::Devices(&devices))
                    .await;
            }
            let my_master = cross
                .get(&(me.to_owned(), "master".to_owned()))
                .and_then(cross_signing_public_key);
            if rows
                .iter()
                .any(|row| row.0 == me && Some(&row.1) == my_master.as_ref())
            {
                self.federation()
                    .federate_device_change(&r.user_id, id, DeviceChange::SigningKeys)
                    .await;
            }
        }
        Ok(json!({ "failures": failures }))
    }

    /// Whether a server admin lets the user replace its cross-signing keys without UIA now
    /// (until the deadline set through the admin API).
    async fn replaceable_without_uia(self, user: &str) -> Result<bool> {
        let deadline = self.db.cross_signing_replacement_deadline(user).await?;
        Ok(deadline.is_some_and(|d| d > crate::util::now_ms()))
    }
}

/// What a signature upload is checked against.
struct SigContext<'a> {
    me: &'a str,
    device_keys: &'a HashMap<(String, String), Value>,
    cross: &'a HashMap<(String, String), Value>,
}

impl SigContext<'_> {
    fn cross_key(&self, user: &str, kind: &str) -> Option<&Value> {
        self.cross.get(&(user.to_owned(), kind.to_owned()))
    }

    /// The signatures of one uploaded object that verify, or the failure to report.
    fn check(
        &self,
        target_user: &str,
        key_id: &str,
        signed: &Value,
    ) -> std::result::Result<Vec<SignatureRow>, Value> {
        let me = self.me;
        let bytes = signed_bytes(signed).map_err(|e| failure("M_BAD_JSON", e.message))?;
        let same_as = |stored: &Value| signed_bytes(stored).ok().as_deref() == Some(bytes.as_str());
        let row = |signer_key: &str, sig: &str| {
            (
                target_user.to_owned(),
                key_id.to_owned(),
                me.to_owned(),
                signer_key.to_owned(),
                sig.to_owned(),
            )
        };
        let target_master = self.cross_key(target_user, "master");
        let is_master = target_master
            .and_then(cross_signing_public_key)
            .is_some_and(|p| p == key_id);
        let stored = if is_master {
            target_master
        } else if target_user == me {
            self.device_keys.get(&(me.to_owned(), key_id.to_owned()))
        } else {
            None
        };
        let Some(stored) = stored else {
            let msg = if target_user == me {
                format!("Unknown key {key_id}")
            } else {
                "Only another user's master key can be signed".to_owned()
            };
            return Err(failure("M_NOT_FOUND", msg));
        };
        if !same_as(stored) {
            return Err(failure(
                "M_INVALID_SIGNATURE",
                "The signed object differs from the stored key",
            ));
        }
        if is_master && target_user == me {
            // My master key, signed by one of my devices.
            let mut good = vec![];
            let sigs = signed["signatures"][me]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (signer_key, sig) in sigs {
                let Some(device) = signer_key.strip_prefix("ed25519:") else {
                    continue;
                };
                let Some(dk) = self.device_keys.get(&(me.to_owned(), device.to_owned())) else {
                    continue;
                };
                let (Some(public), Some(sig)) = (dk["keys"][&signer_key].as_str(), sig.as_str())
                else {
                    continue;
                };
                if verify_signature(signed, me, &signer_key, public).is_ok() {
                    good.push(row(&signer_key, sig));
                }
            }
            if good.is_empty() {
                return Err(failure("M_INVALID_SIGNATURE", "No valid device signature"));
            }
            return Ok(good);
        }
        // My device signed by my self-signing key, or another user's master key signed by my
        // user-signing key.
        let (kind, label) = if is_master {
            ("user_signing", "user-signing")
        } else {
            ("self_signing", "self-signing")
        };
        let public = self
            .cross_key(me, kind)
            .and_then(cross_signing_public_key)
            .ok_or_else(|| failure("M_INVALID_SIGNATURE", format!("No {label} key uploaded")))?;
        let signer_key = format!("ed25519:{public}");
        verify_signature(signed, me, &signer_key, &public)
            .map_err(|e| failure("M_INVALID_SIGNATURE", e))?;
        let sig = signed["signatures"][me][&signer_key]
            .as_str()
            .unwrap_or_default();
        Ok(vec![row(&signer_key, sig)])
    }
}
