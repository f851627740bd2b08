//! Inbound transactions: PDUs checked and handed to their rooms (rooms in parallel, events of a
//! room in order), missing prev events fetched from the sender, EDUs applied; the answer is
//! remembered per (origin, txn id) so a retried transaction changes nothing.

use crate::services::federation::client::owned;
use crate::services::federation::FederationFace;
use ruma::api::federation::event::get_missing_events;
use std::collections::BTreeMap;

use ruma::{OwnedRoomId, RoomId, ServerName};
use serde_json::{json, Map, Value};

use super::pdu::CheckedPdu;
use crate::{
    metrics::PduOutcome,
    services::{filter::glob, rooms::Outcome},
    util, Error, Result,
};

/// Most events of one transaction taken with the state fetched from the sender because their
/// prev events could not be had.
const MAX_GAP_FALLBACKS: usize = 5;

/// Whether a room's `m.room.server_acl` lets `server` take part.
pub fn acl_allows(acl: &Value, server: &ServerName) -> bool {
    let name = server.host();
    if acl.get("allow_ip_literals").and_then(Value::as_bool) == Some(false)
        && (name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('['))
    {
        return false;
    }
    let list = |k: &str| -> Vec<String> {
        acl.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if list("deny").iter().any(|p| glob(p, name)) {
        return false;
    }
    list("allow").iter().any(|p| glob(p, name))
}

impl FederationFace<'_> {
    /// Refuses a server that the room's ACL bans.
    pub(super) async fn check_acl(self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        let rows = self
            .db
            .current_state_events(&[room_id.to_string()], Some(&["m.room.server_acl"]))
            .await?;
        if let Some(row) = rows.first() {
            let ev: Value = serde_json::from_str(&row.json)?;
            if !acl_allows(&ev["content"], server) {
                return Err(Error::forbidden(format!(
                    "{server} is banned from this room by its ACL"
                )));
            }
        }
        Ok(())
    }

    pub async fn receive_transaction(
        self,
        origin: &ServerName,
        txn: &str,
        pdus: Vec<Value>,
        edus: Vec<Value>,
    ) -> Result<Value> {
        if let Some(done) = self.db.federation_txn(origin.as_str(), txn).await? {
            return Ok(serde_json::from_str(&done).unwrap_or_else(|_| json!({ "pdus": {} })));
        }
        let mut by_room: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in pdus {
            let room = p["room_id"].as_str().unwrap_or_default().to_owned();
            by_room.entry(room).or_default().push(p);
        }
        let work = by_room
            .into_iter()
            .map(|(room, pdus)| async move { self.receive_room_pdus(origin, &room, pdus).await });
        let mut results = Map::new();
        for part in futures_util::future::join_all(work).await {
            results.extend(part);
        }
        for edu in edus {
            match self.receive_edu(origin, &edu).await {
                // This server failed (its database): the transaction is not recorded, so the
                // sender retries it (PDUs are then known, to-device messages deduplicated).
                Err(e) if e.status.is_server_error() => return Err(e),
                Err(e) => tracing::debug!(%origin, error = %e.message, "EDU ignored"),
                Ok(()) => {}
            }
        }
        let resp = json!({ "pdus": results });
        self.db
            .store_federation_txn(origin.as_str(), txn, &resp.to_string(), util::now_ms())
            .await?;
        Ok(resp)
    }

    async fn receive_room_pdus(
        self,
        origin: &ServerName,
        room: &str,
        pdus: Vec<Value>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let fail = |out: &mut Map<String, Value>, pdus: &[Value], msg: &str| {
            for (i, p) in pdus.iter().enumerate() {
                let key = p["event_id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("unknown-{i}"));
                out.insert(key, json!({ "error": msg }));
            }
        };
        let Ok(room_id) = RoomId::parse(room) else {
            self.metrics
                .incoming_pdus(PduOutcome::Rejected, pdus.len() as u64);
            fail(&mut out, &pdus, "invalid room id");
            return out;
        };
        let rules = match self.rooms().room_rules(room_id.as_str()).await {
            Ok(r) => r,
            Err(_) => {
                self.metrics
                    .incoming_pdus(PduOutcome::Rejected, pdus.len() as u64);
                fail(&mut out, &pdus, "unknown room");
                return out;
            }
        };
        if let Err(e) = self.check_acl(&room_id, origin).await {
            self.metrics
                .incoming_pdus(PduOutcome::Rejected, pdus.len() as u64);
            fail(&mut out, &pdus, &e.message);
            return out;
        }
        let mut checked: Vec<CheckedPdu> = vec![];
        for p in &pdus {
            match self.check_pdu(p, &rules).await {
                Ok(c) => checked.push(c),
                Err(e) => {
                    self.metrics.incoming_pdus(PduOutcome::Rejected, 1);
                    let id = format!("invalid-{}", checked.len());
                    out.insert(id, json!({ "error": e.message }));
                }
            }
        }
        let taken = checked.len() as u64;
        match self
            .accept_with_gaps(origin, &room_id, checked, &rules)
            .await
        {
            Ok(results) => {
                for (id, o) in results {
                    let (v, counted) = match o {
                        Outcome::Accepted => (json!({}), PduOutcome::Accepted),
                        Outcome::AlreadyKnown => (json!({}), PduOutcome::AlreadyKnown),
                        Outcome::SoftFailed => (json!({}), PduOutcome::SoftFailed),
                        Outcome::Rejected(e) => (json!({ "error": e }), PduOutcome::Rejected),
                        Outcome::MissingPrevs(_) => (
                            json!({ "error": "prev events unknown and unavailable" }),
                            PduOutcome::Rejected,
                        ),
                    };
                    self.metrics.incoming_pdus(counted, 1);
                    out.insert(id.to_string(), v);
                }
            }
            Err(e) => {
                tracing::warn!(%room_id, error = %e.message, "cannot take PDUs");
                self.metrics.incoming_pdus(PduOutcome::Rejected, taken);
                fail(&mut out, &pdus, &e.message);
            }
        }
        out
    }

    /// Accepts PDUs; when some follow events we do not have, asks the sender for the missing
    /// ones (`/get_missing_events`) and tries again once.
    pub(super) async fn accept_with_gaps(
        self,
        origin: &ServerName,
        room_id: &OwnedRoomId,
        checked: Vec<CheckedPdu>,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<Vec<(ruma::OwnedEventId, Outcome)>> {
        let keep: Vec<(ruma::OwnedEventId, Value)> = checked
            .iter()
            .map(|c| {
                (
                    c.event_id.clone(),
                    serde_json::to_value(&c.object).unwrap_or_default(),
                )
            })
            .collect();
        let first = self.rooms().accept_remote_pdus(room_id, checked).await?;
        let gaps: Vec<&ruma::OwnedEventId> = first
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::MissingPrevs(_)))
            .map(|(id, _)| id)
            .collect();
        if gaps.is_empty() {
            return Ok(first);
        }
        let (extremities, _) = self.db.room_extremities(room_id.as_str()).await?;
        let earliest = extremities
            .into_iter()
            .map(owned)
            .collect::<Result<Vec<_>>>()?;
        let latest = gaps.iter().map(|id| (*id).clone()).collect();
        let mut request =
            get_missing_events::v1::Request::new(room_id.to_owned(), earliest, latest);
        request.limit = 50u32.into();
        let missing = self.call(origin, request).await?;
        let mut events: Vec<Value> = missing["events"].as_array().cloned().unwrap_or_default();
        events.sort_by_key(|e| e["depth"].as_i64().unwrap_or(0));
        let mut fill = vec![];
        for e in &events {
            if let Ok(c) = self.check_pdu(e, rules).await {
                fill.push(c);
            }
        }
        self.rooms().accept_remote_pdus(room_id, fill).await?;
        // Retry the events that had gaps.
        let mut retry = vec![];
        for (id, v) in &keep {
            if gaps.contains(&id) {
                if let Ok(c) = self.check_pdu(v, rules).await {
                    retry.push(c);
                }
            }
        }
        let mut second = self.rooms().accept_remote_pdus(room_id, retry).await?;
        // Gaps that /get_missing_events could not fill: the state before the event from the
        // sender (/state_ids, /event_auth, /event), fetched events kept as outliers. A few per
        // transaction: each costs several requests.
        let mut fallbacks = 0;
        for (id, outcome) in second.iter_mut() {
            if !matches!(outcome, Outcome::MissingPrevs(_)) || fallbacks >= MAX_GAP_FALLBACKS {
                continue;
            }
            fallbacks += 1;
            let Some((_, v)) = keep.iter().find(|(k, _)| k == id) else {
                continue;
            };
            let Ok(c) = self.check_pdu(v, rules).await else {
                continue;
            };
            match self.accept_over_gap(origin, room_id, rules, c).await {
                Ok(o) => *outcome = o,
                Err(e) => {
                    tracing::info!(%room_id, event = %id, error = %e.message, "gap not filled")
                }
            }
        }
        let mut out: Vec<(ruma::OwnedEventId, Outcome)> = first
            .into_iter()
            .filter(|(_, o)| !matches!(o, Outcome::MissingPrevs(_)))
            .collect();
        out.extend(second);
        Ok(out)
    }

    /// EDUs: typing and receipts of remote users in rooms they are joined to, device-list and
    /// signing-key updates, to-device messages.
    async fn receive_edu(self, origin: &ServerName, edu: &Value) -> Result<()> {
        // A NUL character in any string would fail the database on PostgreSQL only (an error of
        // ours, which fails the transaction and makes the sender retry it forever).
        if crate::util::has_nul(edu) {
            return Err(Error::bad_json("EDU contains a NUL character"));
        }
        let content = &edu["content"];
        match edu["edu_type"].as_str().unwrap_or_default() {
            "m.typing" => {
                let user =
                    crate::util::parse_user_id(content["user_id"].as_str().unwrap_or_default())?;
                let room =
                    crate::util::parse_room_id(content["room_id"].as_str().unwrap_or_default())?;
                if user.server_name() != origin {
                    return Err(Error::forbidden("typing for a user of another server"));
                }
                // A server the room's ACL bans takes no part in it, typing included.
                self.check_acl(&room, origin).await?;
                let typing = content["typing"].as_bool().unwrap_or(false);
                self.sync()
                    .set_typing(&user, &room, typing, Some(30_000))
                    .await
            }
            "m.receipt" => {
                let Some(rooms) = content.as_object() else {
                    return Ok(());
                };
                for (room, kinds) in rooms {
                    let room = crate::util::parse_room_id(room)?;
                    self.check_acl(&room, origin).await?;
                    for (user, r) in kinds["m.read"].as_object().into_iter().flatten() {
                        let user = crate::util::parse_user_id(user)?;
                        if user.server_name() != origin {
                            continue;
                        }
                        let thread = r["data"]["thread_id"].as_str();
                        for ev in r["event_ids"].as_array().into_iter().flatten().take(1) {
                            if let Some(ev) = ev.as_str() {
                                self.sync()
                                    .set_receipt(&user, &room, "m.read", ev, thread)
                                    .await?;
                            }
                        }
                    }
                }
                Ok(())
            }
            "m.device_list_update" | "m.signing_key_update" => {
                self.receive_device_edu(origin, content).await
            }
            "m.direct_to_device" => self.e2ee().receive_to_device_edu(origin, content).await,
            "m.presence" => self.sync().receive_presence_edu(origin, content).await,
            _ => Ok(()),
        }
    }
}
