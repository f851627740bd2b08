//! End-to-end encryption, server side. The server stores and relays key material and encrypted
//! payloads; it checks every signature a client uploads (with vodozemac) and never sees a
//! plaintext.

crate::services::face!(
    /// The face of end-to-end encryption: device keys, cross-signing, to-device, backup.
    E2eeFace
);

pub mod backup;
pub mod cross_signing;
pub mod dehydrated;
pub mod device_keys;
pub mod device_lists;
pub mod federation;
pub mod to_device;

// What other areas use of the e2ee area's inner files (its door, with the face).
pub use device_lists::{RoomsSeen, Window};

use ruma::{CanonicalJsonValue, OwnedUserId, UserId};
use serde_json::Value;
use vodozemac::{Ed25519PublicKey, Ed25519Signature};

use super::Services;
use crate::{Error, Result};

/// The bytes a signature covers: the canonical JSON of the object without `signatures` and
/// `unsigned`.
pub fn signed_bytes(obj: &Value) -> Result<String> {
    let mut obj = obj.clone();
    let map = obj
        .as_object_mut()
        .ok_or_else(|| Error::bad_json("Signed object must be a JSON object"))?;
    map.remove("signatures");
    map.remove("unsigned");
    let canonical = CanonicalJsonValue::try_from(obj)
        .map_err(|e| Error::bad_json(format!("Not canonical JSON: {e}")))?;
    Ok(canonical.to_string())
}

/// Checks `obj.signatures[signer][key_id]` against an Ed25519 public key (unpadded base64).
pub fn verify_signature(
    obj: &Value,
    signer: &str,
    key_id: &str,
    public_key: &str,
) -> std::result::Result<(), String> {
    let sig = obj["signatures"][signer][key_id]
        .as_str()
        .ok_or_else(|| format!("No signature by {signer} with {key_id}"))?;
    let key = Ed25519PublicKey::from_base64(public_key).map_err(|e| format!("Invalid key: {e}"))?;
    let sig = Ed25519Signature::from_base64(sig).map_err(|e| format!("Invalid signature: {e}"))?;
    let bytes = signed_bytes(obj).map_err(|e| e.message)?;
    key.verify(bytes.as_bytes(), &sig)
        .map_err(|_| format!("Signature by {signer} with {key_id} does not verify"))
}

/// The single `ed25519:<public key>` entry of a cross-signing key's `keys`.
pub fn cross_signing_public_key(key: &Value) -> Option<String> {
    let keys = key["keys"].as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, value) = keys.iter().next()?;
    let public = value.as_str()?;
    (id.strip_prefix("ed25519:")? == public).then(|| public.to_owned())
}

/// A reserved position on the device-list stream. Publish it once the change is committed;
/// dropped unpublished (an error path), it is abandoned (durably, see `abandon_positions`) so
/// the stream neither stalls nor reuses it after a restart.
pub struct DeviceListTicket<'a> {
    services: &'a Services,
    pub id: i64,
    done: bool,
}

impl<'a> E2eeFace<'a> {
    pub async fn device_list_ticket(self) -> Result<DeviceListTicket<'a>> {
        Ok(DeviceListTicket {
            services: self.s,
            id: self.take_positions(|s| &s.device_list_stream, 1).await?[0],
            done: false,
        })
    }
}

impl DeviceListTicket<'_> {
    /// What the change's transaction does with the position on a cluster (see
    /// `Services::finish_of`; whom to wake is told by `publish`).
    pub fn finish(&self) -> Option<crate::store::cluster::Finish<'_>> {
        self.services.finish_of(
            |s| &s.device_list_stream,
            std::slice::from_ref(&self.id),
            &[],
        )
    }

    /// Makes the change readable and wakes the users who see it: the users themselves and
    /// everyone sharing a room with them.
    pub async fn publish(mut self, users: &[&UserId]) {
        self.done = true;
        let s = self.services;
        let mut wake: Vec<OwnedUserId> = users.iter().map(|u| (*u).to_owned()).collect();
        for u in users {
            match s.db.users_sharing_rooms(u.as_str()).await {
                Ok(list) => wake.extend(list.iter().filter_map(|x| UserId::parse(x).ok())),
                Err(e) => tracing::warn!(error = %e, "device-list wake-up set unavailable"),
            }
        }
        wake.sort();
        wake.dedup();
        if s.device_list_stream.shared {
            // The change's transaction finished the position; whom to wake is told now.
            let notice = crate::services::streams::stream_notice(
                s.device_list_stream.name,
                self.id,
                Some(&wake),
            );
            s.tell_cluster(vec![notice]).await;
            wake = vec![];
        }
        s.completed(|s| &s.device_list_stream, &[self.id], wake)
            .await;
    }
}

impl Drop for DeviceListTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.services
                .abandon_positions(|s| &s.device_list_stream, vec![self.id]);
        }
    }
}
