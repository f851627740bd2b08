//! The rooms area's one door to federation (`scripts/house.py` refuses any other file of
//! `services/rooms` that calls the federation face or names its modules). What the event DAG
//! needs from other servers, and nothing else:
//! - outgoing: queue a persisted event for the servers in the room and wake their senders;
//! - incoming: ask a server for what a room lacks (missing events, state, auth chains,
//!   backfill), check and store what comes back;
//! - membership through a resident server (join, invite, leave, knock) and the room
//!   directories of other servers.

use ruma::api::{
    federation::authentication::ServerSignatures, path_builder::SinglePath, Metadata,
    OutgoingRequest,
};
use ruma::{
    room_version_rules::RoomVersionRules, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId,
    ServerName, UserId,
};
use serde_json::Value;
use std::collections::HashSet;

pub(super) use crate::services::federation::{
    acl_allows, owned, pdu::CheckedPdu, room_servers, MAX_FROM_EVENTS,
};
use crate::services::rooms::{state::State, PublicRoomsRequest, RoomState, RoomsFace};
use crate::store::rooms::MembershipRow;
use crate::Result;

impl RoomsFace<'_> {
    // Outgoing.

    /// The servers a new event of the room goes to (every server with a joined member).
    pub(super) fn room_destinations(self, room: &RoomState) -> Vec<OwnedServerName> {
        self.federation().room_destinations(room)
    }

    /// The outbox rows that queue `event_ids` for `dests`, written with the events.
    pub(super) fn outbox_rows(
        self,
        dests: &[OwnedServerName],
        event_ids: &[String],
    ) -> Vec<(i64, String, String)> {
        self.federation().outbox_rows(dests, event_ids)
    }

    /// The room an alias names and servers that know it (this server's from the database,
    /// others' by asking them).
    pub(super) async fn alias_and_servers(
        self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<String>)> {
        self.federation().lookup_alias(alias).await
    }

    /// The `room` of another server's `/hierarchy` of a room (its summary), from the first of
    /// `via` (at most three, never this server) that answers one.
    pub(super) async fn remote_hierarchy_room(
        self,
        room_id: &RoomId,
        via: &[OwnedServerName],
    ) -> Option<Value> {
        for server in via.iter().filter(|s| **s != self.server_name).take(3) {
            let request =
                ruma::api::federation::space::get_hierarchy::v1::Request::new(room_id.to_owned());
            match self.federation().call(server, request).await {
                Ok(v) if v["room"].is_object() => return Some(v["room"].clone()),
                Ok(_) => {}
                Err(e) => tracing::debug!(%server, error = %e.message, "remote room summary"),
            }
        }
        None
    }

    /// Wakes the sender of a destination once its rows are committed.
    pub(super) fn wake_destination(self, dest: &str, reset: bool) {
        self.federation().wake_destination(dest, reset)
    }

    // Incoming.

    /// One request of ruma's federation API to another server (backfill, auth chains, alias
    /// queries): its JSON answer, checked by the caller.
    pub(super) async fn call<R>(self, dest: &ServerName, request: R) -> Result<Value>
    where
        R: OutgoingRequest + Metadata<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        self.federation().call(dest, request).await
    }

    /// A remote PDU's format, size, hashes and signatures checked.
    pub(super) async fn check_pdu(
        self,
        value: &Value,
        rules: &RoomVersionRules,
    ) -> Result<CheckedPdu> {
        self.federation().check_pdu(value, rules).await
    }

    /// Checks and stores events as outliers (auth chains, state), returns the ids stored.
    pub(super) async fn store_outliers(
        self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        events: &[Value],
    ) -> Result<HashSet<OwnedEventId>> {
        self.federation()
            .store_outliers(room_id, rules, events)
            .await
    }

    /// The state before an event, asked of `server` (`/state_ids`, then the events missing).
    pub(super) async fn remote_state_before(
        self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &str,
    ) -> Result<State> {
        self.federation()
            .remote_state_before(server, room_id, rules, event_id)
            .await
    }

    // Membership through a resident server, and other servers' directories.

    /// The servers that can make a membership change for a room this server left or was only
    /// invited to (and the invite's origin).
    pub(super) async fn out_of_band_servers(
        self,
        room_id: &RoomId,
        membership_event: &str,
    ) -> Result<(Vec<OwnedServerName>, Option<String>)> {
        self.federation()
            .out_of_band_servers(room_id, membership_event)
            .await
    }

    pub(super) async fn join_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        content: Value,
    ) -> Result<OwnedRoomId> {
        self.federation()
            .join_remote(user, room_id, servers, content)
            .await
    }

    pub(super) async fn invite_remote(
        self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        content: Value,
    ) -> Result<()> {
        self.federation()
            .invite_remote(sender, room_id, target, content)
            .await
    }

    pub(super) async fn leave_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        current: &MembershipRow,
        reason: Option<&str>,
    ) -> Result<()> {
        self.federation()
            .leave_remote(user, room_id, current, reason)
            .await
    }

    pub(super) async fn knock_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        content: Value,
    ) -> Result<()> {
        self.federation()
            .knock_remote(user, room_id, servers, content)
            .await
    }

    pub(super) async fn remote_public_rooms(
        self,
        server: &ServerName,
        req: PublicRoomsRequest,
    ) -> Result<Value> {
        self.federation().remote_public_rooms(server, req).await
    }
}
