//! Asking another server for what this one lacks around an event: the state before it
//! (`/state_ids`, then `/event_auth` and `/event` for the events not known here, or `/state` when
//! many are missing) and single events. Fetched events are checked (signatures, hashes, auth
//! against their own auth events) and stored as outliers: known, never in timelines.

use crate::services::federation::client::owned;
use crate::services::federation::FederationFace;
use ruma::api::federation::{
    authorization::get_event_authorization,
    event::{get_event, get_room_state, get_room_state_ids},
};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, OwnedEventId, RoomId, ServerName,
};
use serde_json::Value;

use crate::{
    services::rooms::{
        judge_batch,
        pdu::{belongs_to, Pdu},
        state::State,
    },
    Error, Result,
};

/// Above this many unknown events, the state is fetched whole (`/state`) rather than event by
/// event.
const MAX_SINGLE_FETCHES: usize = 50;
/// Most events fetched around one event (state and auth chain).
const MAX_FETCHED: usize = 20_000;

impl FederationFace<'_> {
    /// The state before `event_id` according to `server`, every event of it known here
    /// afterwards (the missing ones fetched and stored as outliers). Events that fail their
    /// checks are left out of the state.
    pub async fn remote_state_before(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &str,
    ) -> Result<State> {
        let at: OwnedEventId = owned(event_id)?;
        let ids = self
            .call(
                server,
                get_room_state_ids::v1::Request::new(at.clone(), room_id.to_owned()),
            )
            .await?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .take(MAX_FETCHED)
                .collect()
        };
        let state_ids = strings(&ids["pdu_ids"]);
        let auth_ids = strings(&ids["auth_chain_ids"]);
        let wanted: Vec<String> = state_ids.iter().chain(&auth_ids).cloned().collect();
        let known: HashSet<String> = self
            .db
            .event_places(&wanted)
            .await?
            .into_iter()
            .map(|p| p.event_id)
            .collect();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !known.contains(*id))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if missing.len() > MAX_SINGLE_FETCHES {
            let v = self
                .call(
                    server,
                    get_room_state::v1::Request::new(at, room_id.to_owned()),
                )
                .await?;
            let mut all: Vec<Value> = v["pdus"].as_array().cloned().unwrap_or_default();
            all.extend(v["auth_chain"].as_array().cloned().unwrap_or_default());
            self.store_outliers(room_id, rules, &all).await?;
        } else if !missing.is_empty() {
            // The event's auth chain in one request, then what is still missing one by one.
            let request = get_event_authorization::v1::Request::new(room_id.to_owned(), at);
            match self.call(server, request).await {
                Ok(v) => {
                    let chain = v["auth_chain"].as_array().cloned().unwrap_or_default();
                    self.store_outliers(room_id, rules, &chain).await?;
                }
                Err(e) => tracing::debug!(%server, error = %e.message, "event_auth failed"),
            }
            let now_known: HashSet<String> = self
                .db
                .event_places(&missing)
                .await?
                .into_iter()
                .map(|p| p.event_id)
                .collect();
            let ask: Vec<String> = missing
                .into_iter()
                .filter(|id| !now_known.contains(id))
                .collect();
            let fetched = self.fetch_events(server, &ask).await;
            self.store_outliers(room_id, rules, &fetched).await?;
        }
        let pdus = self.rooms().load_pdus(&state_ids).await?;
        Ok(pdus
            .into_values()
            .filter(|p| !p.rejected)
            .filter(|p| {
                belongs_to(
                    p,
                    room_id,
                    rules.authorization.room_create_event_id_as_room_id,
                )
            })
            .filter_map(|p| {
                let k = p.state_key.clone()?;
                Some(((StateEventType::from(p.kind.to_string().as_str()), k), p))
            })
            .collect())
    }

    /// Single events from `server` (`/event`), ten at a time; failures are skipped.
    pub(super) async fn fetch_events(self, server: &ServerName, ids: &[String]) -> Vec<Value> {
        let mut out = vec![];
        for chunk in ids.iter().take(MAX_FETCHED).collect::<Vec<_>>().chunks(10) {
            let work = chunk
                .iter()
                .map(|id| (*id).clone())
                .map(|id| self.fetch_event(server, id));
            out.extend(
                futures_util::future::join_all(work)
                    .await
                    .into_iter()
                    .flatten(),
            );
        }
        out
    }

    async fn fetch_event(self, server: &ServerName, id: String) -> Option<Value> {
        let Ok(event_id) = owned::<OwnedEventId>(id.as_str()) else {
            return None;
        };
        match self
            .call(server, get_event::v1::Request::new(event_id))
            .await
        {
            Ok(v) => v["pdus"].as_array().and_then(|a| a.first().cloned()),
            Err(e) => {
                tracing::debug!(%server, event = %id, error = %e.message, "event fetch failed");
                None
            }
        }
    }

    /// Checks events of a room fetched from another server and stores those that pass as
    /// outliers: signatures and hashes, then the auth rules against their own auth events
    /// (each after the events it cites). Those their auth events refuse are stored rejected.
    /// Returns the ids stored (not rejected) or already known.
    pub async fn store_outliers(
        self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        events: &[Value],
    ) -> Result<HashSet<OwnedEventId>> {
        let mut checked: Vec<(Arc<Pdu>, String)> = vec![];
        let mut seen = HashSet::new();
        for v in events.iter().take(MAX_FETCHED) {
            let Ok(c) = self.check_pdu(v, rules).await else {
                continue;
            };
            if !seen.insert(c.event_id.clone()) {
                continue;
            }
            let Ok(p) = Pdu::parse(c.event_id.as_str(), &c.json) else {
                continue;
            };
            if belongs_to(
                &p,
                room_id,
                rules.authorization.room_create_event_id_as_room_id,
            ) {
                checked.push((p, c.json));
            }
        }
        checked.sort_by_key(|(p, _)| p.depth);
        let ids: Vec<String> = checked
            .iter()
            .map(|(p, _)| p.event_id.to_string())
            .collect();
        let known: HashSet<String> = self
            .db
            .event_places(&ids)
            .await?
            .into_iter()
            .map(|p| p.event_id)
            .collect();
        // Auth events: those known here, and those of this batch that passed.
        let auth_ids: Vec<String> = checked
            .iter()
            .flat_map(|(p, _)| p.auth_events.iter().map(|a| a.to_string()))
            .collect();
        let mut auth: HashMap<OwnedEventId, Arc<Pdu>> = self.rooms().load_pdus(&auth_ids).await?;
        // The create event (not among the auth events from room version 12 on).
        let create = match self.rooms().room_create_pdu(room_id).await? {
            Some(c) => Some(c),
            None => checked
                .iter()
                .map(|(p, _)| p)
                .find(|p| p.kind == ruma::events::TimelineEventType::RoomCreate)
                .cloned(),
        };
        let mut out = HashSet::new();
        let mut fresh: Vec<(Arc<Pdu>, String)> = vec![];
        for (p, json) in checked {
            if known.contains(p.event_id.as_str()) {
                out.insert(p.event_id.clone());
                auth.insert(p.event_id.clone(), p);
            } else {
                fresh.push((p, json));
            }
        }
        let judged = judge_batch(rules, fresh, &mut auth, create.as_ref());
        // Rejected events are kept known (flagged), so that what cites them is rejected too.
        self.rooms()
            .write_outliers(room_id, &judged.rejected, true)
            .await?;
        let good = judged.accepted;
        if good.is_empty() {
            return Ok(out);
        }
        out.extend(good.iter().map(|(p, _)| p.event_id.clone()));
        self.rooms().write_outliers(room_id, &good, false).await?;
        Ok(out)
    }
}

impl FederationFace<'_> {
    /// Gives up on filling a gap event by event: takes `event` with the state before it as
    /// `server` reports it (spec: the fallback when `/get_missing_events` cannot fill a gap).
    pub(super) async fn accept_over_gap(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event: crate::services::federation::pdu::CheckedPdu,
    ) -> Result<crate::services::rooms::Outcome> {
        let state = self
            .remote_state_before(server, room_id, rules, event.event_id.as_str())
            .await?;
        if !state.contains_key(&(StateEventType::RoomCreate, String::new())) {
            return Err(Error::bad_json(
                "The state before the event has no create event",
            ));
        }
        // Tchap: state entries the access rules refuse (rejected here when they came as
        // events) do not come back through a reported state.
        let mut state = state;
        if self.policy_rules.enabled() {
            let snapshot = state.clone();
            let mut refused = vec![];
            state.retain(|_, p| {
                let ok =
                    crate::services::policy::access_rules::check(&self.policy_rules, &snapshot, p)
                        .is_ok();
                if !ok {
                    refused.push(p.event_id.to_string());
                }
                ok
            });
            self.db.mark_rejected(room_id.as_str(), &refused).await?;
        }
        let id = event.event_id.clone();
        let mut supplied = HashMap::new();
        supplied.insert(id.clone(), state);
        let mut out = self
            .rooms()
            .accept_remote_pdus_with(room_id, vec![event], supplied)
            .await?;
        Ok(out
            .pop()
            .map(|(_, o)| o)
            .unwrap_or(crate::services::rooms::Outcome::MissingPrevs(vec![])))
    }
}
