//! Local events are signed here: the content hash, then this server's signature, as the room
//! version's rules say (ruma). The event id of a local event is the reference hash returned.

use ruma::{signatures::reference_hash, CanonicalJsonObject};

use crate::services::rooms::RoomsFace;
use crate::{Error, Result};

impl RoomsFace<'_> {
    /// Signs an event as this server (content hash, then signature) and returns its reference
    /// hash: the event id without its `$`.
    pub fn sign_pdu(
        self,
        obj: &mut CanonicalJsonObject,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<String> {
        ruma::signatures::hash_and_sign_event(
            self.server_name.as_str(),
            &self.keys.pair,
            obj,
            &rules.redaction,
        )
        .map_err(|e| Error::bad_json(e.to_string()))?;
        Ok(reference_hash(obj, rules)
            .map_err(|e| Error::bad_json(e.to_string()))?
            .to_string())
    }
}
