//! Event filters (`/user/{id}/filter`, inline sync filters, /messages filters).

use serde::{Deserialize, Serialize};

use crate::store::events::EventRow;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_fields: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_format: Option<String>,
    pub account_data: EventFilter,
    pub presence: EventFilter,
    pub room: RoomFilter,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EventFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_senders: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RoomFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    pub include_leave: bool,
    pub timeline: RoomEventFilter,
    pub state: RoomEventFilter,
    pub ephemeral: RoomEventFilter,
    pub account_data: RoomEventFilter,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RoomEventFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_senders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains_url: Option<bool>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    /// Unread counts per thread (`unread_thread_notifications` in /sync).
    pub unread_thread_notifications: bool,
}

/// `*` matches any run of characters, as the spec's type filters allow. Linear-time matching
/// with a single backtrack point (O(pattern × value) at worst): no input can make it explode.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

fn list_allows(
    allow: &Option<Vec<String>>,
    deny: &Option<Vec<String>>,
    value: &str,
    patterns: bool,
) -> bool {
    let m = |p: &String| if patterns { glob(p, value) } else { p == value };
    if deny.as_ref().is_some_and(|d| d.iter().any(m)) {
        return false;
    }
    allow.as_ref().is_none_or(|a| a.iter().any(m))
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        list_allows(&self.rooms, &self.not_rooms, room_id, false)
    }
}

impl RoomEventFilter {
    pub fn allows(&self, row: &EventRow) -> bool {
        if !list_allows(&self.types, &self.not_types, &row.kind, true)
            || !list_allows(&self.senders, &self.not_senders, &row.sender, false)
            || !list_allows(&self.rooms, &self.not_rooms, &row.room_id, false)
        {
            return false;
        }
        if let Some(want) = self.contains_url {
            // A `url` key of the content itself (never a substring of the JSON text).
            let has = serde_json::from_str::<serde_json::Value>(&row.json)
                .ok()
                .is_some_and(|v| v["content"].get("url").is_some());
            return has == want;
        }
        true
    }

    pub fn allows_type(&self, kind: &str) -> bool {
        list_allows(&self.types, &self.not_types, kind, true)
    }

    /// Timeline limit, clamped to a sane range.
    pub fn limit_or(&self, default: i64) -> i64 {
        self.limit.unwrap_or(default).clamp(1, 1000)
    }
}

impl EventFilter {
    pub fn allows_type(&self, kind: &str) -> bool {
        list_allows(&self.types, &self.not_types, kind, true)
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("m.*", "m.room.message"));
        assert!(glob("m.room.message", "m.room.message"));
        assert!(!glob("m.room.message", "m.room.messages"));
        assert!(glob("*.message", "m.room.message"));
        assert!(glob("m.*.mess*", "m.room.message"));
        assert!(!glob("org.*", "m.room.message"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "a"));
        // Adversarial: many stars against a long value (exponential for a naive backtracker,
        // which would never finish here).
        let pattern = format!("{}b", "*a".repeat(25));
        assert!(!glob(&pattern, &"a".repeat(255)));
    }
}
