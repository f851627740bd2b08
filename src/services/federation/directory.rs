//! Directory queries to other servers: their published rooms (`/publicRooms`) and their room
//! aliases (`/query/directory`).

use crate::services::federation::FederationFace;
use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        query::get_room_information,
    },
    directory::{Filter, RoomNetwork, RoomTypeFilter},
};
use ruma::{OwnedRoomId, RoomAliasId, RoomId, ServerName};
use serde_json::{json, Map, Value};

use crate::{services::rooms::PublicRoomsRequest, Error, Result};

/// Rooms per page asked of another server at most.
const MAX_REMOTE_PAGE: i64 = 500;
/// Servers kept from another server's alias answer.
const MAX_ALIAS_SERVERS: usize = 50;

impl FederationFace<'_> {
    /// The room directory of another server (`GET` or, with a filter, `POST`
    /// `/_matrix/federation/v1/publicRooms`), passed on to the client.
    pub async fn remote_public_rooms(
        self,
        server: &ServerName,
        req: PublicRoomsRequest,
    ) -> Result<Value> {
        let limit = match req.limit {
            Some(l) if l < 0 => return Err(Error::invalid_param("limit must not be negative")),
            Some(l) if l > 0 => Some(l.min(MAX_REMOTE_PAGE)),
            _ => None,
        };
        let limit = limit.and_then(|l| ruma::UInt::new(l as u64));
        let network = match (&req.third_party_instance_id, req.include_all_networks) {
            (Some(id), _) => RoomNetwork::ThirdParty(id.clone()),
            (None, Some(true)) => RoomNetwork::All,
            _ => RoomNetwork::Matrix,
        };
        let answer = match &req.filter {
            None => {
                let mut request = get_public_rooms::v1::Request::new();
                request.limit = limit;
                request.since = req.since.clone();
                request.room_network = network;
                self.call(server, request).await?
            }
            Some(f) => {
                let mut filter = Filter::new();
                filter.generic_search_term = f.generic_search_term.clone();
                filter.room_types = f
                    .room_types
                    .iter()
                    .flatten()
                    .map(|t| RoomTypeFilter::from(t.as_deref()))
                    .collect();
                let mut request = get_public_rooms_filtered::v1::Request::new();
                request.limit = limit;
                request.since = req.since.clone();
                request.filter = filter;
                request.room_network = network;
                self.call(server, request).await?
            }
        };
        // Only the fields of the spec, and only rooms that name themselves.
        let chunk: Vec<Value> = answer["chunk"]
            .as_array()
            .map(|rooms| {
                rooms
                    .iter()
                    .filter(|r| {
                        r["room_id"]
                            .as_str()
                            .is_some_and(|id| RoomId::parse(id).is_ok())
                            && r["num_joined_members"].is_i64()
                    })
                    .take(MAX_REMOTE_PAGE as usize)
                    .cloned()
                    .collect()
            })
            .ok_or_else(|| {
                Error::bad_gateway(format!("{server} answered a malformed room directory"))
            })?;
        let mut out = Map::new();
        out.insert("chunk".into(), json!(chunk));
        for k in ["next_batch", "prev_batch"] {
            if let Some(t) = answer[k].as_str() {
                out.insert(k.into(), json!(t));
            }
        }
        if let Some(n) = answer["total_room_count_estimate"].as_i64() {
            out.insert("total_room_count_estimate".into(), json!(n));
        }
        Ok(Value::Object(out))
    }

    /// The room an alias points to and servers to join it through: this server's aliases from
    /// the database, other servers' by asking them (`/_matrix/federation/v1/query/directory`).
    pub async fn lookup_alias(self, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<String>)> {
        if alias.server_name() == self.server_name {
            let room = self.rooms().resolve_alias(alias).await?;
            return Ok((room, vec![self.server_name.to_string()]));
        }
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let v = self.call(alias.server_name(), request).await?;
        let malformed = || {
            Error::bad_gateway(format!(
                "{} answered a malformed alias query",
                alias.server_name()
            ))
        };
        let room = v["room_id"]
            .as_str()
            .and_then(|r| RoomId::parse(r).ok())
            .ok_or_else(malformed)?;
        let mut servers: Vec<String> = v["servers"]
            .as_array()
            .ok_or_else(malformed)?
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| ServerName::parse(s).is_ok())
            .take(MAX_ALIAS_SERVERS)
            .map(str::to_owned)
            .collect();
        servers.dedup();
        // When this server is in the room it comes first (as Synapse).
        let me = self.server_name.as_str();
        if servers.iter().any(|s| s == me) {
            servers.retain(|s| s != me);
            servers.insert(0, me.to_owned());
        }
        Ok((room, servers))
    }
}
