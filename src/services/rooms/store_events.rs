//! The one way events reach the tables. Every kind of event — local sends and accepted remote
//! events (live), auth chains, fetched and rejected events and out-of-band memberships
//! (outliers), history fetched backwards (backfilled) — is stored by [`Services::write_events`]:
//! what differs between them is data in an [`EventWrite`] (which rows come with the events:
//! extremities, state, memberships, relations, push actions, redactions, the federation
//! outbox…), never another copy of the transaction. One transaction per write, and the events'
//! stream positions become readable only after it commits (or, when it fails, once their
//! abandonment is recorded: `abandon_positions`).

use crate::services::rooms::RoomsFace;
use std::sync::Arc;

use ruma::{OwnedUserId, RoomId};

use super::{
    pdu::{Pdu, PduStrings},
    redactions::RedactionIn,
    GroupWrite,
};
use crate::{
    store::{
        events::NewEvent, push::NewPushAction, relations::NewRelation,
        remote_memberships::NewRemoteMembership, Db,
    },
    util, Result,
};

/// Where the events of a write go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// The room's timeline (positions of the events stream).
    #[default]
    Live,
    /// Known, outside the timeline (positions of the events stream, never shown in it).
    Outlier,
    /// Earlier history: outliers already stored become timeline events at positions below
    /// every other (taken by the caller from the backfill floor, not the events stream).
    Backfilled,
}

/// A room created by the write.
pub struct NewRoom<'a> {
    pub version: &'a str,
    pub creator: &'a str,
    pub public: bool,
}

/// A local user's membership of a room this server may not be in (an invite received, a knock
/// sent, the leave that ends them).
pub struct OutOfBand<'a> {
    pub user: &'a str,
    pub membership: &'a str,
    /// What replaces the user's earlier invite or knock in the room (None: it is only dropped).
    pub remote: Option<NewRemoteMembership<'a>>,
}

/// One write of events of one room and of the rows that come with them.
#[derive(Default)]
pub struct EventWrite<'a> {
    pub placement: Placement,
    pub events: Vec<NewEvent<'a>>,
    pub new_room: Option<NewRoom<'a>>,
    /// Forward extremities no longer (the new events' prev events) and new ones.
    pub extremities_removed: Vec<&'a str>,
    pub extremities_added: Vec<&'a str>,
    /// Index the events' text for search.
    pub search: bool,
    pub relations: Vec<NewRelation<'a>>,
    pub push: Vec<NewPushAction<'a>>,
    /// (user, stream position): what came before a user's own event is read.
    pub read_upto: Vec<(&'a str, i64)>,
    pub state_groups: Vec<&'a GroupWrite>,
    /// Redactions, judged against the events stored (see redactions.rs).
    pub redactions: Vec<RedactionIn<'a>>,
    /// Current state: keys removed, rows set (type, state key, event id, position).
    pub state_removed: Vec<(&'a str, &'a str)>,
    pub state_set: Vec<(&'a str, &'a str, &'a str, i64)>,
    /// (user, membership, event id, position)
    pub memberships: Vec<(&'a str, &'a str, &'a str, i64)>,
    pub out_of_band: Option<OutOfBand<'a>>,
    /// Federation outbox rows (id, destination, event id) of the local events.
    pub outbox: Vec<(i64, String, String)>,
}

impl RoomsFace<'_> {
    /// Stores events of a room (with their JSON) as outliers: known, outside the timeline and
    /// every state. `rejected`: their auth events refuse them — kept known so that they are
    /// neither fetched nor judged again and that what cites them is rejected too, never in a
    /// state, a timeline or an answer.
    pub async fn write_outliers(
        self,
        room_id: &RoomId,
        events: &[(Arc<Pdu>, String)],
        rejected: bool,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let positions = self
            .take_positions(|s| &s.events_stream, events.len())
            .await?;
        let strings: Vec<PduStrings> = events.iter().map(|(p, _)| p.strings()).collect();
        let rows: Vec<NewEvent> = events
            .iter()
            .zip(&positions)
            .zip(&strings)
            .map(|(((p, json), position), s)| NewEvent {
                rejected,
                ..p.new_event(s, room_id.as_str(), json, *position, 0, true)
            })
            .collect();
        let write = EventWrite {
            placement: Placement::Outlier,
            events: rows,
            ..Default::default()
        };
        self.write_events(room_id.as_str(), positions, write, vec![])
            .await
    }

    /// Stores `w` in one transaction. `positions` are the events-stream positions the events
    /// took (empty for backfilled events); they become readable on commit, waking `wake`, and
    /// are durably abandoned if the write fails.
    pub async fn write_events(
        self,
        room_id: &str,
        positions: Vec<i64>,
        w: EventWrite<'_>,
        wake: Vec<OwnedUserId>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let fin = self.finish_of(|s| &s.events_stream, &positions, &wake);
        let res = self.write_events_tx(room_id, &w, fin.as_ref()).await;
        if res.is_ok() {
            let mine = format!(":{}", self.server_name);
            let local = w
                .events
                .iter()
                .filter(|e| e.sender.ends_with(&mine))
                .count() as u64;
            let remote = w.events.len() as u64 - local;
            self.metrics
                .events_written(local, remote, started.elapsed().as_secs_f64());
            self.completed(|s| &s.events_stream, &positions, wake).await;
        } else {
            self.abandon_positions(|s| &s.events_stream, positions);
        }
        res
    }

    async fn write_events_tx(
        self,
        room_id: &str,
        w: &EventWrite<'_>,
        fin: Option<&crate::store::cluster::Finish<'_>>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        if let Some(r) = &w.new_room {
            Db::insert_room(
                &mut tx.tx,
                room_id,
                r.version,
                r.creator,
                r.public,
                util::now_ms(),
            )
            .await?;
        }
        for g in &w.state_groups {
            let refs: Vec<(&str, &str, &str)> = g
                .entries
                .iter()
                .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
                .collect();
            Db::insert_state_group(&mut tx.tx, g.id, room_id, g.prev, g.chain_len, &refs).await?;
        }
        match w.placement {
            Placement::Backfilled => Db::insert_backfilled(&mut tx.tx, room_id, &w.events).await?,
            Placement::Live | Placement::Outlier => {
                Db::insert_events(
                    &mut tx.tx,
                    room_id,
                    &w.events,
                    &w.extremities_removed,
                    &w.extremities_added,
                )
                .await?
            }
        }
        if w.search {
            Db::index_for_search(&mut tx.tx, &w.events).await?;
        }
        if !w.relations.is_empty() {
            Db::insert_relations(&mut tx.tx, room_id, &w.relations).await?;
        }
        if !w.push.is_empty() {
            Db::insert_push_actions(&mut tx.tx, room_id, util::now_ms(), &w.push).await?;
        }
        Db::mark_push_read_many(&mut tx.tx, room_id, &w.read_upto).await?;
        if w.placement != Placement::Outlier {
            // Redactions are judged, and redactions waiting for the events stored here (see
            // redactions.rs); soft-failed and rejected events are no targets.
            let stored: Vec<(&str, &str)> = w
                .events
                .iter()
                .filter(|e| !e.soft_failed && !e.rejected && !e.outlier)
                .map(|e| (e.event_id, e.sender))
                .collect();
            self.apply_redactions(&mut tx.tx, room_id, &w.redactions, &stored)
                .await?;
        }
        if !w.state_removed.is_empty() {
            Db::delete_current_state(&mut tx.tx, room_id, &w.state_removed).await?;
        }
        if !w.state_set.is_empty() {
            Db::upsert_current_state(&mut tx.tx, room_id, &w.state_set).await?;
        }
        if !w.memberships.is_empty() {
            Db::upsert_memberships(&mut tx.tx, room_id, &w.memberships).await?;
        }
        if let Some(o) = &w.out_of_band {
            let event = w.events.first().map(|e| e.event_id).unwrap_or_default();
            Db::put_out_of_band(&mut tx.tx, room_id, o.user, event, o.remote.as_ref()).await?;
        }
        Db::insert_outbox(&mut tx.tx, &w.outbox).await?;
        // Debug builds only: a write that fails after its rows went in (rolled back), for the
        // crash test of abandoned positions (`PALABRE_FAILPOINT=fail_write_of_failpoint_body`
        // fails every live write of a message whose body is "failpoint").
        #[cfg(debug_assertions)]
        if w.placement == Placement::Live
            && std::env::var_os("PALABRE_FAILPOINT")
                .is_some_and(|f| f == "fail_write_of_failpoint_body")
            && w.events.iter().any(|e| {
                serde_json::from_str::<serde_json::Value>(e.json)
                    .is_ok_and(|v| v["content"]["body"] == "failpoint")
            })
        {
            return Err(crate::Error::unknown("failpoint: write refused"));
        }
        self.db.finish_positions(&mut tx.tx, fin).await?;
        tx.commit().await?;
        Ok(())
    }
}
