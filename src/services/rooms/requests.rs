//! What local users ask the rooms area for: an event to send, a room to create (and what an
//! upgrade carries into the replacement room). Plain data read by the policy too.

use ruma::{events::StateEventType, OwnedEventId};
use serde::Deserialize;
use serde_json::{Map, Value};

/// An event a local user asks for.
pub struct EventSpec {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    /// Top-level `redacts` (room versions before 11).
    pub redacts: Option<OwnedEventId>,
    /// A server admin's request: the Tchap access rules do not apply (local requests only).
    pub bypass_policy: bool,
}

impl EventSpec {
    pub fn state(kind: StateEventType, key: &str, content: Value) -> Self {
        Self {
            kind: kind.to_string(),
            state_key: Some(key.to_owned()),
            content,
            redacts: None,
            bypass_policy: false,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct CreateRoomRequest {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<String>,
    pub invite_3pid: Vec<Value>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    pub initial_state: Vec<InitialState>,
    pub preset: Option<String>,
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
}

/// What a room upgrade carries into the replacement room, beyond a `/createRoom` request:
/// the room starts from exactly these power levels and this state instead of a preset.
pub struct Replacement {
    /// The power levels the room starts with (the old room's, with the upgrading user raised
    /// enough to copy the state over).
    pub power_levels: Value,
    /// State copied from the old room, in order (bans included). An event the copy cannot send
    /// is left out with a warning rather than failing the upgrade.
    pub state: Vec<(String, String, Value)>,
    /// The old room's own power levels, sent last when they differ from `power_levels`.
    pub final_power_levels: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}
