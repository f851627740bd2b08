//! Checks on a PDU from another server (spec: Checks performed on receipt of a PDU), steps 1–3:
//! format and size, signatures of every server that must have signed it, and the content hash
//! (a mismatch keeps the event, redacted).

use crate::services::federation::FederationFace;
use std::collections::BTreeMap;

use ruma::{
    canonical_json::redact,
    room_version_rules::RoomVersionRules,
    signatures::{
        reference_hash, required_server_signatures_to_verify_event, verify_event, PublicKeyMap,
        Verified,
    },
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedServerName,
};
use serde_json::Value;

use crate::{services::rooms::MAX_PDU_BYTES, Error, Result};

/// A PDU that passed the signature and hash checks.
pub struct CheckedPdu {
    pub event_id: OwnedEventId,
    pub object: CanonicalJsonObject,
    /// The JSON as stored (redacted when the content hash did not match).
    pub json: String,
}

/// A PDU whose format, size and event id are checked, waiting for its signatures to be.
pub struct UnverifiedPdu {
    pub event_id: OwnedEventId,
    pub object: CanonicalJsonObject,
    /// Its `origin_server_ts`: the keys must have been valid then.
    pub ts: i64,
    /// Each server that must have signed it, with the `ed25519` key ids it signed with (a few
    /// at most: made-up key ids must not make this server fetch without end).
    pub signers: Vec<(OwnedServerName, Vec<String>)>,
}

/// The checks on a PDU that need no key (steps 1 and the start of 2): size, no NUL, canonical
/// JSON, its event id (the reference hash, fields the sender must not set taken out) and the
/// servers that must have signed it, each with at least one key id. Pure, so that the fuzz
/// targets (`fuzz/`) run it on any input.
pub fn prepare_pdu(value: &Value, rules: &RoomVersionRules) -> Result<UnverifiedPdu> {
    let text = serde_json::to_string(value)?;
    if text.len() > MAX_PDU_BYTES {
        return Err(Error::too_large("PDU larger than 64 KiB"));
    }
    // NUL characters cannot be stored in PostgreSQL text: refused on every backend, so
    // that every Palabre of a room decides alike.
    if crate::util::has_nul(value) {
        return Err(Error::bad_json("PDU contains a NUL character"));
    }
    let mut object: CanonicalJsonObject = match CanonicalJsonValue::try_from(value.clone()) {
        Ok(CanonicalJsonValue::Object(o)) => o,
        _ => return Err(Error::bad_json("PDU is not canonical JSON")),
    };
    // Fields a sender must not set for us.
    object.remove("unsigned");
    object.remove("event_id");
    let hash = reference_hash(&object, rules).map_err(|e| Error::bad_json(format!("PDU: {e}")))?;
    let event_id =
        OwnedEventId::try_from(format!("${hash}")).map_err(|e| Error::bad_json(e.to_string()))?;
    let servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
        .map_err(|e| Error::bad_json(format!("PDU signatures: {e}")))?;
    let ts = object
        .get("origin_server_ts")
        .and_then(|v| match v {
            CanonicalJsonValue::Integer(i) => Some(i64::from(*i)),
            _ => None,
        })
        .unwrap_or(0);
    let signatures = match object.get("signatures") {
        Some(CanonicalJsonValue::Object(o)) => Some(o),
        _ => None,
    };
    let mut signers = vec![];
    for server in servers {
        let key_ids: Vec<String> = match signatures.and_then(|s| s.get(server.as_str())) {
            Some(CanonicalJsonValue::Object(o)) => o
                .keys()
                .filter(|k| k.starts_with("ed25519:"))
                .take(super::key_fetch::MAX_KEY_IDS_PER_SERVER)
                .cloned()
                .collect(),
            _ => vec![],
        };
        if key_ids.is_empty() {
            return Err(Error::forbidden(format!("PDU not signed by {server}")));
        }
        signers.push((server, key_ids));
    }
    Ok(UnverifiedPdu {
        event_id,
        object,
        ts,
        signers,
    })
}

/// The rest of steps 2 and 3, with the signers' keys found: the signatures must hold, and a
/// content hash that does not keeps the event, redacted. Pure, as [`prepare_pdu`].
pub fn verify_pdu(
    pdu: UnverifiedPdu,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Result<CheckedPdu> {
    let UnverifiedPdu {
        event_id,
        mut object,
        ..
    } = pdu;
    let verified = verify_event(keys, &object, rules)
        .map_err(|e| Error::forbidden(format!("PDU signature check failed: {e}")))?;
    if verified == Verified::Signatures {
        tracing::warn!(%event_id, "content hash mismatch: event redacted");
        object =
            redact(object, &rules.redaction, None).map_err(|e| Error::bad_json(e.to_string()))?;
    }
    let json = serde_json::to_string(&object)?;
    Ok(CheckedPdu {
        event_id,
        object,
        json,
    })
}

impl FederationFace<'_> {
    /// Signatures and hashes of a PDU of a room with these rules.
    pub async fn check_pdu(self, value: &Value, rules: &RoomVersionRules) -> Result<CheckedPdu> {
        let pdu = prepare_pdu(value, rules)?;
        let mut map = PublicKeyMap::new();
        for (server, key_ids) in &pdu.signers {
            // Any one valid key is enough: ask for each until one is known.
            let mut set = BTreeMap::new();
            for id in key_ids {
                if let Ok(keys) = self
                    .server_verify_keys(server, std::slice::from_ref(id), pdu.ts)
                    .await
                {
                    set.extend(keys);
                }
            }
            if set.is_empty() {
                return Err(Error::forbidden(format!(
                    "No key of {server} to check the PDU"
                )));
            }
            map.insert(server.to_string(), set);
        }
        verify_pdu(pdu, &map, rules)
    }
}
