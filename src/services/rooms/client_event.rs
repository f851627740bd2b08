//! Serving events to clients: the client format (no DAG fields), unsigned data, redaction.

use crate::services::rooms::RoomsFace;
use std::collections::HashMap;

use ruma::{canonical_json::redact, canonical_json::RedactedBecause, CanonicalJsonObject, UserId};
use serde_json::{json, Map, Value};

use crate::{store::events::EventRow, util, Result};

const DAG_FIELDS: &[&str] = &[
    "auth_events",
    "prev_events",
    "hashes",
    "signatures",
    "depth",
    "origin",
    "membership",
];

/// How much of an event a client sees.
#[derive(Clone, Copy)]
pub enum Format {
    /// The full client event.
    Client,
    /// Stripped state (invites): type, state_key, content, sender.
    Stripped,
}

impl RoomsFace<'_> {
    /// Formats events for `viewer` (transaction ids are shown to the sending device only).
    /// Redacted events are redacted with the room version's rules, in one batch.
    /// Client-format events carry their bundled aggregations (`unsigned.m.relations`).
    pub async fn format_events(
        self,
        rows: &[EventRow],
        viewer: Option<(&UserId, &str)>,
        format: Format,
    ) -> Result<Vec<Value>> {
        let aggregations = match format {
            Format::Client => self.aggregations(rows, viewer).await?,
            Format::Stripped => HashMap::new(),
        };
        self.format_plain(rows, viewer, format, &aggregations).await
    }

    /// [`Self::format_events`] with the aggregations already computed (sync computes them once
    /// for every room).
    pub async fn format_plain(
        self,
        rows: &[EventRow],
        viewer: Option<(&UserId, &str)>,
        format: Format,
        aggregations: &HashMap<String, Value>,
    ) -> Result<Vec<Value>> {
        let redaction_ids: Vec<String> =
            rows.iter().filter_map(|r| r.redacted_by.clone()).collect();
        let redactions: HashMap<String, EventRow> = if redaction_ids.is_empty() {
            HashMap::new()
        } else {
            self.db
                .get_events(&redaction_ids)
                .await?
                .into_iter()
                .map(|r| (r.event_id.clone(), r))
                .collect()
        };
        let now = util::now_ms();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut obj: Map<String, Value> = match serde_json::from_str(&row.json) {
                Ok(Value::Object(o)) => o,
                _ => continue,
            };
            if let Some(red) = row.redacted_by.as_ref().and_then(|id| redactions.get(id)) {
                let rules = self.room_rules(&row.room_id).await?;
                if let Ok(canon) =
                    serde_json::from_value::<CanonicalJsonObject>(Value::Object(obj.clone()))
                {
                    let because = serde_json::from_str::<CanonicalJsonObject>(&red.json)
                        .ok()
                        .map(RedactedBecause::from_json);
                    if let Ok(r) = redact(canon, &rules.redaction, because) {
                        if let Ok(Value::Object(o)) = serde_json::to_value(r) {
                            obj = o;
                        }
                    }
                }
                // The redaction itself in client format.
                if let Ok(Value::Object(mut ro)) = serde_json::from_str::<Value>(&red.json) {
                    to_client(&mut ro, red, viewer, now);
                    obj.entry("unsigned").or_insert_with(|| json!({}))["redacted_because"] =
                        Value::Object(ro);
                }
            }
            match format {
                Format::Client => {
                    to_client(&mut obj, row, viewer, now);
                    if let Some(agg) = aggregations.get(&row.event_id) {
                        obj.entry("unsigned").or_insert_with(|| json!({}))["m.relations"] =
                            agg.clone();
                    }
                    out.push(Value::Object(obj));
                }
                Format::Stripped => out.push(json!({
                    "type": obj.get("type"),
                    "state_key": obj.get("state_key"),
                    "content": obj.get("content"),
                    "sender": obj.get("sender"),
                })),
            }
        }
        Ok(out)
    }
}

fn to_client(
    obj: &mut Map<String, Value>,
    row: &EventRow,
    viewer: Option<(&UserId, &str)>,
    now: i64,
) {
    for f in DAG_FIELDS {
        obj.remove(*f);
    }
    obj.insert("event_id".into(), json!(row.event_id));
    obj.insert("room_id".into(), json!(row.room_id));
    // Room versions ≥ 11 keep `redacts` in content; clients still read the top-level one.
    if row.kind == "m.room.redaction" && !obj.contains_key("redacts") {
        if let Some(r) = obj.get("content").and_then(|c| c.get("redacts")).cloned() {
            obj.insert("redacts".into(), r);
        }
    }
    let ts = obj
        .get("origin_server_ts")
        .and_then(Value::as_i64)
        .unwrap_or(now);
    let unsigned = obj.entry("unsigned").or_insert_with(|| json!({}));
    if let Some(u) = unsigned.as_object_mut() {
        u.insert("age".into(), json!((now - ts).max(0)));
        if let (Some((user, device)), Some(txn), Some(dev)) =
            (viewer, &row.txn_id, &row.sender_device)
        {
            if user.as_str() == row.sender && device == dev {
                u.insert("transaction_id".into(), json!(txn));
            }
        }
    }
}
