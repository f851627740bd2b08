//! Device-list and signing-key EDUs, both ways. Out: when a local user's devices or keys change,
//! one `m.device_list_update` per device (or one `m.signing_key_update`) is queued durably for
//! every server sharing a room with them, with `stream_id` / `prev_id` taken from the user's
//! device-list positions (the same positions `/user/devices` answers, so a receiver that resynced
//! can chain the next update). In: the remote user's cached devices and keys are dropped (the next
//! `/keys/query` asks their server again, which is the resync the spec asks for on a gap, done
//! for every update) and local users sharing a room see them in `device_lists.changed`.
//! To-device EDUs are in `e2ee/to_device.rs`.

use crate::services::federation::FederationFace;
use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{json, Value};

use crate::{store::Db, Error, Result};

/// What changed for a local user.
pub enum DeviceChange<'a> {
    /// These devices were added, changed (keys, signatures) or deleted.
    Devices(&'a [String]),
    /// Their master or self-signing key.
    SigningKeys,
}

/// The servers of these users other than `me`, each once.
pub fn remote_servers<'a>(
    users: impl IntoIterator<Item = &'a UserId>,
    me: &ServerName,
) -> Vec<OwnedServerName> {
    let mut out: Vec<OwnedServerName> = users
        .into_iter()
        .map(|u| u.server_name().to_owned())
        .filter(|s| s != me)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl FederationFace<'_> {
    /// Other servers with members joined to a room where `user` is joined.
    async fn servers_sharing_rooms(self, user: &UserId) -> Result<Vec<OwnedServerName>> {
        let users: Vec<ruma::OwnedUserId> = self
            .db
            .users_sharing_rooms(user.as_str())
            .await?
            .iter()
            .filter_map(|u| UserId::parse(u.as_str()).ok())
            .collect();
        Ok(remote_servers(
            users.iter().map(|u| &**u),
            &self.server_name,
        ))
    }

    /// Whether a user of this server shares a joined room with `user` (of another server).
    pub(crate) async fn shares_room_with_local_user(self, user: &UserId) -> Result<bool> {
        Ok(self
            .db
            .shares_room_with_server(user.as_str(), self.server_name.as_str())
            .await?)
    }

    /// Tells the servers sharing a room with a local user that their devices or keys changed
    /// at device-list position `stream_id` (call once the change is committed).
    pub async fn federate_device_change(
        self,
        user: &UserId,
        stream_id: i64,
        change: DeviceChange<'_>,
    ) {
        if let Err(e) = self.device_change_edus(user, stream_id, change).await {
            tracing::warn!(%user, error = %e.message, "device-list update not queued for federation");
        }
    }

    async fn device_change_edus(
        self,
        user: &UserId,
        stream_id: i64,
        change: DeviceChange<'_>,
    ) -> Result<()> {
        if !self.config.federation.enabled || !self.is_local(user) {
            return Ok(());
        }
        let dests = self.servers_sharing_rooms(user).await?;
        if dests.is_empty() {
            return Ok(());
        }
        let listing = self.e2ee().federation_user_devices(user).await?;
        let mut rows = vec![];
        match change {
            DeviceChange::Devices(ids) => {
                let prev = self
                    .db
                    .device_list_position_before(user.as_str(), stream_id)
                    .await?;
                let devices = listing["devices"].as_array().cloned().unwrap_or_default();
                for id in ids {
                    let mut c = json!({
                        "user_id": user,
                        "device_id": id,
                        "stream_id": stream_id,
                        "prev_id": prev.map(|p| vec![p]).unwrap_or_default(),
                    });
                    match devices.iter().find(|d| d["device_id"] == id.as_str()) {
                        Some(d) => {
                            c["keys"] = d["keys"].clone();
                            if let Some(name) = d.get("device_display_name") {
                                c["device_display_name"] = name.clone();
                            }
                        }
                        None => c["deleted"] = json!(true),
                    }
                    rows.extend(self.plan_edus(&dests, "m.device_list_update", &c));
                }
            }
            DeviceChange::SigningKeys => {
                let mut c = json!({ "user_id": user });
                for k in ["master_key", "self_signing_key"] {
                    if let Some(v) = listing.get(k) {
                        c[k] = v.clone();
                    }
                }
                rows.extend(self.plan_edus(&dests, "m.signing_key_update", &c));
            }
        }
        self.queue_edus(rows).await
    }

    /// `m.device_list_update` / `m.signing_key_update` from `origin` about one of its users.
    pub(super) async fn receive_device_edu(
        self,
        origin: &ServerName,
        content: &Value,
    ) -> Result<()> {
        let user = crate::util::parse_user_id(content["user_id"].as_str().unwrap_or_default())?;
        if user.server_name() != origin {
            return Err(Error::forbidden("device update for another server's user"));
        }
        // Only users someone here shares a room with are tracked.
        if !self.shares_room_with_local_user(&user).await? {
            return Ok(());
        }
        self.e2ee().invalidate_remote_device_cache(&user).await?;
        let ticket = self.e2ee().device_list_ticket().await?;
        let mut tx = self.db.begin_write().await?;
        Db::add_device_list_changes(&mut tx.tx, ticket.id, &[user.to_string()]).await?;
        self.db
            .finish_positions(&mut tx.tx, ticket.finish().as_ref())
            .await?;
        tx.commit().await?;
        ticket.publish(&[&user]).await;
        Ok(())
    }
}
