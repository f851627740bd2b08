//! Knocking (spec: Knocking upon a room): `make_knock` / `send_knock` v1 served to other
//! servers, and local users knocking on rooms this server does not know, through a server that
//! does (the knock is then kept out of band with the `knock_room_state` answered).

use crate::services::federation::FederationFace;
use ruma::{RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::{
    client::raw_json,
    invite::{helper_servers, incompatible, stripped_from_remote},
    leave::supported_versions,
};
use crate::{store::remote_memberships::NewRemoteMembership, Error, Result};
use ruma::api::federation::membership::{create_knock_event, prepare_knock_event};

impl FederationFace<'_> {
    /// `PUT /send_knock/{roomId}/{eventId}`: the knock joins the room; the answer is the room's
    /// stripped state.
    pub async fn send_knock(
        self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &str,
        event: &Value,
    ) -> Result<Value> {
        self.take_remote_membership(origin, room_id, event_id, event, "knock")
            .await?;
        let state = self.stripped_state_pdus(room_id, &[]).await?;
        Ok(json!({ "knock_room_state": state }))
    }

    /// Knocks on a room this server does not know through one of `servers`.
    pub async fn knock_remote(
        self,
        user: &UserId,
        room_id: &RoomId,
        servers: &[ruma::OwnedServerName],
        content: Value,
    ) -> Result<()> {
        let mut last = Error::not_found("No server could help knocking on the room");
        for server in servers.iter().filter(|s| **s != self.server_name) {
            match self.knock_via(server, user, room_id, content.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e.message, "remote knock failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn knock_via(
        self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
        content: Value,
    ) -> Result<()> {
        if !super::allowed(&self.config.federation, server) {
            return Err(Error::forbidden(format!(
                "Federation with {server} is not allowed"
            )));
        }
        let mut make = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        make.ver = supported_versions();
        let resp = self.call(server, make).await?;
        let (event_id, obj, version, rules) =
            self.sign_remote_template(&resp, room_id, user, content)?;
        if !rules.authorization.knocking {
            return Err(incompatible(version.as_str()));
        }
        let send = create_knock_event::v1::Request::new(
            room_id.to_owned(),
            event_id.clone(),
            raw_json(&obj)?,
        );
        let resp = self.call(server, send).await?;
        let list: Vec<Value> = resp["knock_room_state"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let stripped = stripped_from_remote(&list, room_id, &rules)?;
        let servers = helper_servers(&self.server_name, server, room_id, &[], &stripped);
        let servers: Vec<&str> = servers.iter().map(|s| s.as_str()).collect();
        let json = serde_json::to_string(&obj)?;
        self.store_out_of_band(
            user,
            room_id,
            event_id.as_str(),
            &json,
            "knock",
            Some(NewRemoteMembership {
                stripped_state: &serde_json::to_string(&stripped)?,
                servers: &serde_json::to_string(&servers)?,
                room_version: version.as_str(),
            }),
        )
        .await
    }
}
