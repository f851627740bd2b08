//! Directory queries to other servers: their published rooms (`/publicRooms`) and their room
//! aliases (`/query/directory`).

use crate::services::federation::FederationFace;
use axum::http::Method;
use ruma::{OwnedRoomId, RoomAliasId, RoomId, ServerName};
use serde_json::{json, Map, Value};

use crate::{services::rooms::PublicRoomsRequest, util, Error, Result};

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
        let answer = match &req.filter {
            None => {
                let mut params = vec![];
                if let Some(l) = limit {
                    params.push(format!("limit={l}"));
                }
                if let Some(s) = &req.since {
                    params.push(format!("since={}", util::query_encode(s)));
                }
                if let Some(all) = req.include_all_networks {
                    params.push(format!("include_all_networks={all}"));
                }
                if let Some(t) = &req.third_party_instance_id {
                    params.push(format!("third_party_instance_id={}", util::query_encode(t)));
                }
                let mut path = "/_matrix/federation/v1/publicRooms".to_owned();
                if !params.is_empty() {
                    path = format!("{path}?{}", params.join("&"));
                }
                self.federation_request(server, Method::GET, &path, None)
                    .await?
            }
            Some(f) => {
                let mut body = json!({ "filter": {} });
                if let Some(t) = &f.generic_search_term {
                    body["filter"]["generic_search_term"] = json!(t);
                }
                if let Some(types) = &f.room_types {
                    body["filter"]["room_types"] = json!(types);
                }
                for (k, v) in [
                    ("limit", limit.map(|l| json!(l))),
                    ("since", req.since.as_ref().map(|s| json!(s))),
                    (
                        "include_all_networks",
                        req.include_all_networks.map(|b| json!(b)),
                    ),
                    (
                        "third_party_instance_id",
                        req.third_party_instance_id.as_ref().map(|t| json!(t)),
                    ),
                ] {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                self.federation_request(
                    server,
                    Method::POST,
                    "/_matrix/federation/v1/publicRooms",
                    Some(&body),
                )
                .await?
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
        let path = format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            util::query_encode(alias.as_str())
        );
        let v = self
            .federation_request(alias.server_name(), Method::GET, &path, None)
            .await?;
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
