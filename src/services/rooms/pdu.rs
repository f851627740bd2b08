//! A parsed PDU, as the auth rules and state resolution see it.

use std::sync::Arc;

use ruma::{
    events::TimelineEventType, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::store::events::{EventRow, NewEvent};

#[derive(Debug, Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<OwnedEventId>,
    #[serde(default)]
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: UInt,
}

#[derive(Debug, Deserialize)]
struct RedactsInContent {
    redacts: Option<OwnedEventId>,
}

/// Whether an event belongs to `room_id`: its `room_id` field, or, for a room version whose
/// create event has none (v12), only that room's own create event (its id is the room id).
/// Anything else without a room id (another room's create event) is not of this room.
pub fn belongs_to(p: &Pdu, room_id: &RoomId, create_id_is_room_id: bool) -> bool {
    match p.room_id.as_deref() {
        Some(r) => r == room_id,
        None => {
            create_id_is_room_id
                && p.kind == TimelineEventType::RoomCreate
                && room_id.as_str().strip_prefix('!') == p.event_id.as_str().strip_prefix('$')
        }
    }
}

/// A PDU's event id, type, prev and auth event ids as strings.
pub struct PduStrings {
    pub id: String,
    pub kind: String,
    pub prevs: Vec<String>,
    pub auths: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: u64,
    pub rejected: bool,
}

impl Pdu {
    pub fn parse(event_id: &str, json: &str) -> Result<Arc<Pdu>, String> {
        Self::parse_owned(event_id, json).map(Arc::new)
    }

    /// A stored event, with its rejected flag: the auth rules refuse an event citing a rejected
    /// one among its auth events, and state resolution leaves rejected events out.
    pub fn from_row(row: &EventRow) -> Result<Arc<Pdu>, String> {
        let mut p = Self::parse_owned(&row.event_id, &row.json)?;
        p.rejected = row.is_rejected();
        Ok(Arc::new(p))
    }

    /// This event, flagged rejected.
    pub fn as_rejected(&self) -> Arc<Pdu> {
        Arc::new(Pdu {
            rejected: true,
            ..self.clone()
        })
    }

    fn parse_owned(event_id: &str, json: &str) -> Result<Pdu, String> {
        let f: Fields = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let event_id = EventId::parse(event_id).map_err(|e| e.to_string())?;
        // Only a (non-state) m.room.redaction redacts anything.
        let redacts = match f.redacts {
            _ if f.kind != TimelineEventType::RoomRedaction || f.state_key.is_some() => None,
            Some(r) => Some(r),
            None => serde_json::from_str::<RedactsInContent>(f.content.get())
                .ok()
                .and_then(|c| c.redacts),
        };
        Ok(Pdu {
            event_id,
            room_id: f.room_id,
            sender: f.sender,
            origin_server_ts: f.origin_server_ts,
            kind: f.kind,
            content: f.content,
            state_key: f.state_key,
            prev_events: f.prev_events,
            auth_events: f.auth_events,
            redacts,
            depth: f.depth.into(),
            rejected: false,
        })
    }

    /// The ids and type as strings, for the stored row that borrows them (`new_event`).
    pub fn strings(&self) -> PduStrings {
        PduStrings {
            id: self.event_id.to_string(),
            kind: self.kind.to_string(),
            prevs: self.prev_events.iter().map(|e| e.to_string()).collect(),
            auths: self.auth_events.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The stored row of this event, with no local device or transaction and not soft-failed
    /// (callers set what differs). Outliers keep no prev edges: they are not in the room's
    /// graph here.
    pub fn new_event<'a>(
        &'a self,
        s: &'a PduStrings,
        room_id: &'a str,
        json: &'a str,
        stream: i64,
        state_group: i64,
        outlier: bool,
    ) -> NewEvent<'a> {
        NewEvent {
            stream_ordering: stream,
            event_id: &s.id,
            room_id,
            sender: self.sender.as_str(),
            kind: &s.kind,
            state_key: self.state_key.as_deref(),
            depth: self.depth as i64,
            origin_server_ts: u64::from(self.origin_server_ts.get()) as i64,
            state_group,
            json,
            prev_events: if outlier {
                vec![]
            } else {
                s.prevs.iter().map(String::as_str).collect()
            },
            auth_events: s.auths.iter().map(String::as_str).collect(),
            sender_device: None,
            txn_id: None,
            txn_key: None,
            outlier,
            soft_failed: false,
            rejected: false,
        }
    }

    /// A field of the content, as a string.
    pub fn content_str(&self, field: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.content.get()).ok()?;
        v.get(field)?.as_str().map(str::to_owned)
    }

    /// The `membership` of a member event's content.
    pub fn membership(&self) -> Option<ruma::events::room::member::MembershipState> {
        self.content_str("membership").map(Into::into)
    }

    /// A member event that makes its user a member here (joined or invited): who counts in
    /// `local_members` and in the Tchap `direct` rule.
    pub fn joined_or_invited(&self) -> bool {
        use ruma::events::room::member::MembershipState::{Invite, Join};
        matches!(self.membership(), Some(Join | Invite))
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}
