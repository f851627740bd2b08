//! Accounts as the admin API sees them: the user list (v2 and v3), one user's details,
//! create-or-modify (`PUT /v2/users/{id}`), the admin flag, whois, lock and suspension.

use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminFace, Page};
use crate::{
    store::{
        admin_users::{AdminUserRow, UserFlag, UserListQuery},
        users::ProfileField,
    },
    Error, Result,
};

/// `GET /_synapse/admin/v2/users` and `/v3/users`.
#[derive(Debug, Clone, Default)]
pub struct UserListParams {
    pub from: Option<i64>,
    pub limit: Option<i64>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    /// There are no guest accounts here: `guests=false` changes nothing.
    pub guests: Option<bool>,
    pub admins: Option<bool>,
    pub deactivated: Option<bool>,
    pub locked: Option<bool>,
    pub user_types: Vec<String>,
    pub order_by: Option<String>,
    pub dir: Option<String>,
    /// v3: `deactivated` absent lists everyone (v2 then hides deactivated accounts).
    pub v3: bool,
}

/// The body of `PUT /_synapse/admin/v2/users/{user_id}`: every field optional, absent =
/// unchanged (or the default for a new account).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserUpsert {
    pub password: Option<String>,
    pub logout_devices: Option<bool>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub threepids: Option<Vec<Threepid>>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
    pub locked: Option<bool>,
    /// `Some(None)`: the user type is cleared.
    #[serde(default, deserialize_with = "present")]
    pub user_type: Option<Option<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Threepid {
    pub medium: String,
    pub address: String,
}

/// Tells a `null` field (Some(None)) from an absent one (None).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The user types Synapse knows (`UserTypes.ALL_USER_TYPES`).
const USER_TYPES: &[&str] = &["support", "bot"];

fn order_column(order_by: Option<&str>) -> Result<&'static str> {
    Ok(match order_by.unwrap_or("name") {
        "name" | "is_guest" => "u.user_id",
        "admin" => "u.is_admin",
        "user_type" => "COALESCE(u.user_type, '')",
        "deactivated" => "u.deactivated",
        "shadow_banned" => "u.shadow_banned",
        "displayname" => "COALESCE(u.displayname, '')",
        "avatar_url" => "COALESCE(u.avatar_url, '')",
        "creation_ts" => "u.created_ts",
        "last_seen_ts" => "COALESCE(last_seen_ts, 0)",
        "locked" => "u.locked",
        "suspended" => "u.suspended",
        _ => return Err(Error::invalid_param("Unknown value for order_by")),
    })
}

/// A user as the listing shows it (Synapse's integers for the old flags, booleans for the
/// new ones; times in milliseconds).
fn list_entry(u: &AdminUserRow) -> Value {
    json!({
        "name": u.user_id,
        "is_guest": 0,
        "admin": u.is_admin,
        "user_type": u.user_type,
        "deactivated": u.deactivated,
        "shadow_banned": u.shadow_banned,
        "displayname": u.displayname,
        "avatar_url": u.avatar_url,
        "creation_ts": u.created_ts,
        "approved": true,
        "erased": u.erased == 1,
        "last_seen_ts": u.last_seen_ts,
        "locked": u.locked == 1,
        "suspended": u.suspended == 1,
    })
}

impl AdminFace<'_> {
    /// A page of local users: `{users, next_token?, total}`.
    pub async fn list_users(self, p: UserListParams) -> Result<Value> {
        let page = Page::new(p.from, p.limit, 100)?;
        let descending = super::backwards(p.dir.as_deref())?;
        // v2: deactivated (and locked) accounts only when asked for, together with the others.
        let (deactivated, locked) = if p.v3 {
            (p.deactivated, p.locked)
        } else {
            (
                (!p.deactivated.unwrap_or(false)).then_some(false),
                (!p.locked.unwrap_or(false)).then_some(false),
            )
        };
        let q = UserListQuery {
            user_id: p.user_id.filter(|s| !s.is_empty()),
            name: p.name.filter(|s| !s.is_empty()),
            admins: p.admins,
            deactivated,
            locked,
            user_types: p
                .user_types
                .into_iter()
                .map(|t| (!t.is_empty()).then_some(t))
                .collect(),
            order_by: order_column(p.order_by.as_deref())?,
            descending,
            from: page.from,
            limit: page.limit,
        };
        let (rows, total) = self.db.admin_list_users(&q).await?;
        let mut out = json!({
            "users": rows.iter().map(list_entry).collect::<Vec<_>>(),
            "total": total,
        });
        if let Some(next) = page.next_token(rows.len(), total) {
            out["next_token"] = next;
        }
        Ok(out)
    }

    pub(super) async fn user_row(self, user: &UserId) -> Result<AdminUserRow> {
        self.local_user(user)?;
        self.db
            .admin_get_user(user.as_str())
            .await?
            .ok_or_else(|| Error::not_found("User not found"))
    }

    /// `GET /_synapse/admin/v2/users/{user_id}`.
    pub async fn user_details(self, user: &UserId) -> Result<Value> {
        let row = self.user_row(user).await?;
        let threepids: Vec<Value> = self
            .db
            .user_threepids(user.as_str())
            .await?
            .into_iter()
            .map(|t| {
                json!({
                    "medium": t.medium, "address": t.address,
                    "added_at": t.added_ts, "validated_at": t.validated_ts,
                })
            })
            .collect();
        let mut v = list_entry(&row);
        // Synapse's details come from its `UserInfo`: booleans, and the creation time in
        // seconds (the listing keeps integers and milliseconds).
        v["is_guest"] = json!(false);
        v["admin"] = json!(row.is_admin == 1);
        v["deactivated"] = json!(row.deactivated == 1);
        v["shadow_banned"] = json!(row.shadow_banned == 1);
        v["creation_ts"] = json!(row.created_ts / 1000);
        v["threepids"] = json!(threepids);
        v["external_ids"] = json!([]);
        v["appservice_id"] = Value::Null;
        v["consent_server_notice_sent"] = Value::Null;
        v["consent_version"] = Value::Null;
        v["consent_ts"] = Value::Null;
        Ok(v)
    }

    /// `PUT /_synapse/admin/v2/users/{user_id}`: creates the account when it does not exist
    /// (true), else changes the fields given. Answers the user's details.
    pub async fn upsert_user(self, user: &UserId, b: UserUpsert) -> Result<(bool, Value)> {
        self.local_user(user)?;
        check_upsert(&b)?;
        let existing = self.db.admin_get_user(user.as_str()).await?;
        let created = existing.is_none();
        match existing {
            None => {
                self.accounts()
                    .create_user_admin(
                        user.localpart(),
                        b.password.as_deref(),
                        b.admin.unwrap_or(false),
                    )
                    .await?;
            }
            Some(row) => self.modify_user(user, &row, &b).await?,
        }
        self.apply_common(user, &b).await?;
        if created && b.deactivated == Some(true) {
            self.accounts().deactivate(user).await?;
        }
        Ok((created, self.user_details(user).await?))
    }

    /// What changes only on an existing account: password, admin flag, (re)activation.
    async fn modify_user(self, user: &UserId, row: &AdminUserRow, b: &UserUpsert) -> Result<()> {
        match (b.deactivated, row.deactivated == 1) {
            (Some(true), false) => self.accounts().deactivate(user).await?,
            (Some(false), true) => {
                let Some(pw) = &b.password else {
                    return Err(Error::bad_request(
                        "Must provide a password to re-activate an account.",
                    ));
                };
                self.accounts().reactivate(user, pw).await?;
            }
            _ => {
                if let Some(pw) = &b.password {
                    self.accounts()
                        .admin_set_password(user, pw, b.logout_devices.unwrap_or(true))
                        .await?;
                }
            }
        }
        if let Some(a) = b.admin {
            self.db.set_admin(user.as_str(), a).await?;
        }
        Ok(())
    }

    /// The fields set the same way on a new or an existing account.
    async fn apply_common(self, user: &UserId, b: &UserUpsert) -> Result<()> {
        let mut profile_changed = false;
        if let Some(d) = &b.displayname {
            self.sync()
                .set_profile(user, ProfileField::Displayname, Some(d))
                .await?;
            profile_changed = true;
        }
        if let Some(a) = &b.avatar_url {
            self.sync()
                .set_profile(user, ProfileField::AvatarUrl, (!a.is_empty()).then_some(a))
                .await?;
            profile_changed = true;
        }
        if profile_changed {
            if let Some(s) = self.me.upgrade() {
                let target = user.to_owned();
                tokio::spawn(async move { s.rooms().propagate_profile(&target).await });
            }
        }
        if let Some(t) = &b.threepids {
            let list: Vec<(String, String)> = t
                .iter()
                .map(|t| (t.medium.clone(), t.address.clone()))
                .collect();
            self.accounts().admin_set_threepids(user, &list).await?;
        }
        if let Some(l) = b.locked {
            self.set_locked(user, l).await?;
        }
        if let Some(t) = &b.user_type {
            self.db.set_user_type(user.as_str(), t.as_deref()).await?;
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/users/{user_id}/admin`.
    pub async fn is_user_admin(self, user: &UserId) -> Result<bool> {
        Ok(self.user_row(user).await?.is_admin == 1)
    }

    /// `PUT /_synapse/admin/v1/users/{user_id}/admin`: an admin may not demote himself.
    pub async fn set_user_admin(self, by: &UserId, user: &UserId, admin: bool) -> Result<()> {
        self.user_row(user).await?;
        if by == user && !admin {
            return Err(Error::bad_request("You may not demote yourself."));
        }
        self.db.set_admin(user.as_str(), admin).await?;
        Ok(())
    }

    /// Locks (or unlocks) an account: a locked account's requests are refused with 401
    /// `M_USER_LOCKED` (its sessions stay, as Synapse's, for when it is unlocked).
    pub async fn set_locked(self, user: &UserId, locked: bool) -> Result<()> {
        self.user_row(user).await?;
        self.db
            .set_user_flag(user.as_str(), UserFlag::Locked, locked)
            .await?;
        self.accounts().forget_user_tokens(user).await
    }

    /// `PUT /_synapse/admin/v1/suspend/{user_id}`.
    pub async fn set_suspended(self, user: &UserId, suspended: bool) -> Result<()> {
        self.user_row(user).await?;
        self.db
            .set_user_flag(user.as_str(), UserFlag::Suspended, suspended)
            .await?;
        {
            let mut set = self.admin_state.suspended.write();
            if suspended {
                set.insert(user.to_string());
            } else {
                set.remove(user.as_str());
            }
        }
        self.state_changed().await;
        Ok(())
    }

    /// `POST /_synapse/admin/v1/deactivate/{user_id}` (`erase`: the account is marked erased,
    /// as Synapse's GDPR erasure; its events stay, its profile is gone).
    pub async fn deactivate_user(self, user: &UserId, erase: bool) -> Result<()> {
        self.user_row(user).await?;
        self.accounts().deactivate(user).await?;
        if erase {
            self.db
                .set_user_flag(user.as_str(), UserFlag::Erased, true)
                .await?;
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/whois/{user_id}`: devices with their last address and time.
    pub async fn whois(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let mut devices = serde_json::Map::new();
        for d in self.db.list_devices(user.as_str()).await? {
            let connections: Vec<Value> = match (&d.last_seen_ip, d.last_seen_ts) {
                (Some(ip), Some(ts)) => vec![json!({ "ip": ip, "last_seen": ts })],
                _ => vec![],
            };
            devices.insert(
                d.device_id,
                json!({ "sessions": [{ "connections": connections }] }),
            );
        }
        Ok(json!({ "user_id": user, "devices": devices }))
    }

    /// `GET /_synapse/admin/v1/users/{user_id}/joined_rooms`.
    pub async fn joined_rooms(self, user: &UserId) -> Result<Value> {
        let rooms: Vec<String> = self
            .db
            .user_memberships(user.as_str())
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect();
        Ok(json!({ "total": rooms.len(), "joined_rooms": rooms }))
    }

    /// `GET /_synapse/admin/v1/users/{user_id}/memberships`: room -> membership.
    pub async fn memberships(self, user: &UserId) -> Result<Value> {
        let map: serde_json::Map<String, Value> = self
            .db
            .user_memberships(user.as_str())
            .await?
            .into_iter()
            .map(|m| (m.room_id, Value::from(m.membership)))
            .collect();
        Ok(json!({ "memberships": map }))
    }

    /// `GET /_synapse/admin/v1/username_available?username=`.
    pub async fn username_available(self, localpart: &str) -> Result<Value> {
        self.accounts()
            .username_available(&localpart.to_lowercase())
            .await?;
        Ok(json!({ "available": true }))
    }

    /// `GET /_synapse/admin/v1/threepid/{medium}/users/{address}`.
    pub async fn threepid_user(self, medium: &str, address: &str) -> Result<Value> {
        let owner = self
            .db
            .threepid_owner(medium, &address.to_lowercase())
            .await?
            .ok_or_else(|| Error::not_found("User not found"))?;
        Ok(json!({ "user_id": owner }))
    }

    /// `POST /_synapse/admin/v1/reset_password/{user_id}`.
    pub async fn reset_password(self, user: &UserId, password: &str, logout: bool) -> Result<()> {
        self.user_row(user).await?;
        self.accounts()
            .admin_set_password(user, password, logout)
            .await
    }
}

/// Refuses what Synapse refuses in `PUT /v2/users/{id}` before anything changes.
fn check_upsert(b: &UserUpsert) -> Result<()> {
    if let Some(pw) = &b.password {
        if pw.is_empty() || pw.len() > 512 {
            return Err(Error::invalid_param("Invalid password"));
        }
    }
    if b.displayname.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(Error::invalid_param("displayname is too long"));
    }
    if let Some(Some(t)) = &b.user_type {
        if !USER_TYPES.contains(&t.as_str()) {
            return Err(Error::bad_request("Invalid user type"));
        }
    }
    if let Some(list) = &b.threepids {
        if list.len() > 100 {
            return Err(Error::invalid_param("Too many threepids"));
        }
        for t in list {
            if t.medium != "email" && t.medium != "msisdn" {
                return Err(Error::invalid_param("Unknown medium"));
            }
            if t.address.is_empty() || t.address.len() > 320 {
                return Err(Error::invalid_param("Invalid address"));
            }
        }
    }
    Ok(())
}

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/users/{user_id}/accountdata`: global and per-room account data.
    pub async fn account_data(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let mut global = serde_json::Map::new();
        let mut rooms: serde_json::Map<String, Value> = serde_json::Map::new();
        for (room, kind, content) in self
            .db
            .account_data_since(user.as_str(), 0, i64::MAX)
            .await?
        {
            let content: Value = serde_json::from_str(&content).unwrap_or_default();
            if room.is_empty() {
                global.insert(kind, content);
            } else if let Value::Object(m) = rooms.entry(room).or_insert_with(|| json!({})) {
                m.insert(kind, content);
            }
        }
        Ok(json!({ "account_data": { "global": global, "rooms": rooms } }))
    }

    /// `GET /_synapse/admin/v1/users/{user_id}/pushers`: `{pushers, total}`.
    pub async fn pushers(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let mut v = self.push().pushers(user).await?;
        let total = v["pushers"].as_array().map_or(0, Vec::len);
        v["total"] = json!(total);
        Ok(v)
    }

    /// `GET /_synapse/admin/v2/users/{user_id}/devices`: `{devices, total}`.
    pub async fn devices(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let list: Vec<Value> = self
            .accounts()
            .devices(user)
            .await?
            .iter()
            .map(|d| device_entry(user, d))
            .collect();
        Ok(json!({ "total": list.len(), "devices": list }))
    }

    /// `GET /_synapse/admin/v2/users/{user_id}/devices/{device_id}`.
    pub async fn device(self, user: &UserId, device_id: &str) -> Result<Value> {
        self.user_row(user).await?;
        let d = self.accounts().device(user, device_id).await?;
        Ok(device_entry(user, &d))
    }
}

fn device_entry(user: &UserId, d: &crate::store::users::DeviceRow) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
        "last_seen_user_agent": Value::Null,
        "user_id": user,
    })
}

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/users/{id}/sent_invite_count` (`from_ts`: since when, ms).
    pub async fn sent_invite_count(self, user: &UserId, from_ts: Option<i64>) -> Result<Value> {
        self.local_user(user)?;
        let from = from_ts.unwrap_or(0);
        if from < 0 {
            return Err(Error::invalid_param(
                "Query parameter from_ts must be a string representing a positive integer.",
            ));
        }
        let n = self.db.sent_invite_count(user.as_str(), from).await?;
        Ok(json!({ "invite_count": n }))
    }

    /// `GET /_synapse/admin/v1/users/{id}/cumulative_joined_room_count`.
    pub async fn cumulative_joined_room_count(self, user: &UserId) -> Result<Value> {
        self.local_user(user)?;
        let n = self.db.cumulative_joined_rooms(user.as_str()).await?;
        Ok(json!({ "cumulative_joined_room_count": n }))
    }

    /// `POST /_synapse/admin/v1/users/{id}/login`: off unless `[admin] login_as_user`; never
    /// for oneself, never for a deactivated account.
    pub async fn login_as(
        self,
        by: &UserId,
        user: &UserId,
        valid_until_ms: Option<i64>,
    ) -> Result<Value> {
        if !self.config.admin.login_as_user {
            return Err(Error::forbidden(
                "Logging in as a user is turned off on this server ([admin] login_as_user)",
            ));
        }
        if by == user {
            return Err(Error::bad_json("Cannot use admin API to login as self"));
        }
        let row = self.user_row(user).await?;
        if row.deactivated == 1 {
            return Err(Error::bad_json("Cannot log in as a deactivated user"));
        }
        if valid_until_ms.is_some_and(|t| t <= crate::util::now_ms()) {
            return Err(Error::invalid_param("valid_until_ms is in the past"));
        }
        let token = self
            .accounts()
            .admin_login_as(by, user, valid_until_ms)
            .await?;
        Ok(json!({ "access_token": token }))
    }

    /// `POST /_synapse/admin/v2/users/{id}/devices`.
    pub async fn create_device(self, user: &UserId, device_id: &str) -> Result<()> {
        self.user_row(user).await?;
        self.accounts().admin_create_device(user, device_id).await
    }
}

/// Synapse's per-user experimental features (`ExperimentalFeature`). Palabre has none of them,
/// so each is off for everyone and cannot be turned on.
const EXPERIMENTAL_FEATURES: &[&str] = &["msc3881", "msc3575", "msc4222"];

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/experimental_features/{id}`: every feature, off.
    pub async fn experimental_features(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let features: serde_json::Map<String, Value> = EXPERIMENTAL_FEATURES
            .iter()
            .map(|f| ((*f).to_owned(), Value::Bool(false)))
            .collect();
        Ok(json!({ "features": features }))
    }

    /// `PUT /_synapse/admin/v1/experimental_features/{id}`: turning a feature off is what it
    /// already is; turning one on is refused (400), since this server does not have it.
    pub async fn set_experimental_features(self, user: &UserId, body: &Value) -> Result<()> {
        self.user_row(user).await?;
        let features = body
            .get("features")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::missing_param("Missing 'features'"))?;
        for (name, on) in features {
            if !EXPERIMENTAL_FEATURES.contains(&name.as_str()) {
                return Err(Error::invalid_param(format!(
                    "{name:?} is not recognised as a valid experimental feature."
                )));
            }
            match on.as_bool() {
                Some(false) => {}
                Some(true) => {
                    return Err(Error::invalid_param(format!(
                        "{name} is not available on this server"
                    )))
                }
                None => return Err(Error::invalid_param(format!("{name} must be a boolean"))),
            }
        }
        Ok(())
    }
}

impl AdminFace<'_> {
    /// The user an external identity maps to (`GET /v1/auth_providers/…/users/…`). There are
    /// no external identity providers on this server yet: no identity maps to a user.
    pub async fn user_by_external_id(self, provider: &str, external_id: &str) -> Result<Value> {
        if provider.is_empty() || external_id.is_empty() {
            return Err(Error::invalid_param("Empty auth provider or external id"));
        }
        Err(Error::not_found("User not found"))
    }
}
