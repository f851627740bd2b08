//! Room versions this server speaks.

use ruma::{room_version_rules::RoomVersionRules, RoomVersionId};

/// Stable room versions offered (6–12), newest last.
pub const SUPPORTED: &[&str] = &["6", "7", "8", "9", "10", "11", "12"];

/// The rules of a supported room version, None when unsupported.
pub fn supported(v: &RoomVersionId) -> Option<RoomVersionRules> {
    if SUPPORTED.contains(&v.as_str()) {
        v.rules()
    } else {
        None
    }
}

pub fn parse(v: &str) -> Option<(RoomVersionId, RoomVersionRules)> {
    let id = RoomVersionId::try_from(v).ok()?;
    let rules = supported(&id)?;
    Some((id, rules))
}
