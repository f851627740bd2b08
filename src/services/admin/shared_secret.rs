//! Shared-secret registration (`/_synapse/admin/v1/register`), as Synapse's
//! `register_new_matrix_user` speaks it: `GET` hands out a nonce (single use, one minute), and
//! `POST` creates the account when its HMAC-SHA1, keyed with `[admin]
//! registration_shared_secret`, covers the nonce, the user name, the password, the admin flag
//! and the user type. Nonces are kept in the database (bounded), so that a cluster's node may
//! take a nonce another handed out.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminFace, UserUpsert};
use crate::{util, Error, Result};

const NONCE_LIFETIME_MS: i64 = 60_000;
/// Nonces held at most: past it, the oldest go.
const MAX_NONCES: i64 = 1000;

/// The body of `POST /_synapse/admin/v1/register`.
#[derive(Debug, Deserialize)]
pub struct SharedSecretRegistration {
    pub nonce: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub user_type: Option<String>,
    pub mac: String,
}

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/register`.
    pub async fn registration_nonce(self) -> Result<Value> {
        if self
            .config
            .admin
            .registration_shared_secret
            .as_deref()
            .is_none_or(str::is_empty)
        {
            return Err(Error::bad_json("Shared secret registration is not enabled"));
        }
        let nonce = util::random_string(32);
        let now = util::now_ms();
        self.db
            .put_registration_nonce(&nonce, now, now - NONCE_LIFETIME_MS, MAX_NONCES - 1)
            .await?;
        Ok(json!({ "nonce": nonce }))
    }

    /// `POST /_synapse/admin/v1/register`: the account, and a session for it.
    pub async fn register_with_secret(self, b: SharedSecretRegistration) -> Result<Value> {
        let secret = self
            .config
            .admin
            .registration_shared_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::bad_json("Shared secret registration is not enabled"))?;
        self.ratelimit.check(
            "shared_secret_registration",
            "",
            self.config.rate_limits.registration,
        )?;
        let fresh = b.nonce.len() <= 64
            && self
                .db
                .take_registration_nonce(&b.nonce, util::now_ms() - NONCE_LIFETIME_MS)
                .await?;
        if !fresh {
            return Err(Error::invalid_param("unrecognised nonce"));
        }
        if b.username.is_empty() || b.username.len() > 255 || b.username.contains('\0') {
            return Err(Error::invalid_param("Invalid username"));
        }
        if b.password.len() > 512 || b.password.contains('\0') {
            return Err(Error::invalid_param("Invalid password"));
        }
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
            .map_err(|_| Error::unknown("HMAC key"))?;
        mac.update(b.nonce.as_bytes());
        mac.update(b"\0");
        mac.update(b.username.as_bytes());
        mac.update(b"\0");
        mac.update(b.password.as_bytes());
        mac.update(b"\0");
        mac.update(if b.admin { b"admin" } else { b"notadmin" });
        if let Some(t) = &b.user_type {
            mac.update(b"\0");
            mac.update(t.as_bytes());
        }
        let given = hex_decode(&b.mac).ok_or_else(|| Error::forbidden("HMAC incorrect"))?;
        // verify_slice compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| Error::forbidden("HMAC incorrect"))?;
        let localpart = b.username.to_lowercase();
        let user = ruma::UserId::parse(format!("@{localpart}:{}", self.server_name))
            .map_err(|_| Error::invalid_username("Invalid username"))?;
        if self.db.user_exists(user.localpart()).await? {
            return Err(Error::user_in_use("User ID already taken."));
        }
        let upsert = UserUpsert {
            password: Some(b.password),
            displayname: b.displayname,
            admin: Some(b.admin),
            user_type: b.user_type.map(Some),
            ..Default::default()
        };
        self.upsert_user(&user, upsert).await?;
        let (device, token) = self
            .accounts()
            .admin_session(&user, "Shared-secret registration", None)
            .await?;
        Ok(json!({
            "user_id": user,
            "access_token": token,
            "device_id": device,
            "home_server": self.server_name,
        }))
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
