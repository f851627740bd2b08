//! OpenID: a user asks for a short-lived token to prove their identity to a third party (an
//! integration manager, a widget); the third party exchanges it through the federation API
//! (`/openid/userinfo`) for the user id. Tokens are kept as SHA-256 hashes, like access tokens.

use crate::services::accounts::AccountsFace;
use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{util, Error, Result};

/// Lifetime of an OpenID token.
const VALIDITY_MS: i64 = 3600 * 1000;

impl AccountsFace<'_> {
    pub async fn request_openid_token(self, user: &UserId) -> Result<Value> {
        self.ratelimit
            .check("openid", user.as_str(), self.config.rate_limits.message)?;
        let token = util::random_token("mxo");
        let now = util::now_ms();
        self.db
            .insert_openid_token(
                &util::hash_secret(&token),
                user.as_str(),
                now + VALIDITY_MS,
                now,
            )
            .await?;
        Ok(json!({
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": VALIDITY_MS / 1000,
        }))
    }

    /// The user an OpenID token belongs to; `M_UNKNOWN_TOKEN` when unknown, expired, or its
    /// user is deactivated.
    pub async fn openid_userinfo(self, token: &str) -> Result<OwnedUserId> {
        let unknown = || Error::unknown_token("OpenID token unknown or expired");
        if token.is_empty() || token.len() > 256 {
            return Err(unknown());
        }
        let user = self
            .db
            .openid_token_user(&util::hash_secret(token), util::now_ms())
            .await?
            .ok_or_else(unknown)?;
        let active = self
            .db
            .get_user(&user)
            .await?
            .is_some_and(|u| u.deactivated == 0);
        if !active {
            return Err(unknown());
        }
        UserId::parse(user).map_err(|_| unknown())
    }
}
