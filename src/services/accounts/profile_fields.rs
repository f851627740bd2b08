//! Extended profiles (spec v1.16, MSC4133): any key besides `displayname` and `avatar_url`
//! (`m.tz`, namespaced custom keys), its value any JSON. Keys of at most 255 bytes
//! (`M_KEY_TOO_LARGE`), a whole profile of at most 64 KiB as JSON (`M_PROFILE_TOO_LARGE`).
//! Custom keys are not copied into member events or the user directory (as Synapse).

use axum::http::StatusCode;
use ruma::UserId;
use serde_json::{Map, Value};

use crate::{services::accounts::AccountsFace, store::users::ProfileField, Error, Result};

pub const MAX_KEY_BYTES: usize = 255;
pub const MAX_PROFILE_BYTES: usize = 65_536;

/// What a change of a profile key is.
pub enum Change {
    Set(Value),
    Delete,
}

/// The column of the two keys kept on the account.
fn column(key: &str) -> Option<ProfileField> {
    match key {
        "displayname" => Some(ProfileField::Displayname),
        "avatar_url" => Some(ProfileField::AvatarUrl),
        _ => None,
    }
}

impl AccountsFace<'_> {
    /// The extended fields of a local user's profile (their values as JSON).
    pub(super) async fn custom_fields(self, user: &str) -> Result<Map<String, Value>> {
        Ok(self
            .db
            .custom_profile_fields(user)
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
            .collect())
    }

    /// `PUT` / `DELETE /profile/{userId}/{keyName}`: the user's own profile (or any, for a
    /// server admin). Returns whether a key kept on member events changed (displayname,
    /// avatar_url: the caller propagates it to the rooms).
    pub async fn change_profile_key(
        self,
        requester: &UserId,
        target: &UserId,
        key: &str,
        change: Change,
    ) -> Result<bool> {
        if !self.is_local(target) {
            return Err(Error::invalid_param(
                "User is not hosted on this homeserver",
            ));
        }
        if target != requester && !self.is_admin(requester).await? {
            return Err(Error::forbidden("Cannot set another user's profile"));
        }
        if key.is_empty() {
            return Err(Error::invalid_param("The key name is empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "M_KEY_TOO_LARGE",
                format!("Profile keys are at most {MAX_KEY_BYTES} bytes"),
            ));
        }
        if let (Change::Set(v), "displayname" | "avatar_url" | "m.tz") = (&change, key) {
            let cleared = v.is_null() && key != "m.tz";
            if !(v.is_string() || cleared) {
                return Err(Error::bad_json(format!("{key} must be a string")));
            }
        }
        if let Change::Set(v) = &change {
            let mut profile = self.local_profile(target.as_str()).await?;
            profile[key] = v.clone();
            if serde_json::to_vec(&profile).map_or(usize::MAX, |b| b.len()) > MAX_PROFILE_BYTES {
                return Err(Error::new(
                    StatusCode::BAD_REQUEST,
                    "M_PROFILE_TOO_LARGE",
                    "The profile would exceed 64 KiB",
                ));
            }
        }
        if let Some(col) = column(key) {
            let value = match &change {
                Change::Set(Value::String(s)) => Some(s.as_str()),
                _ => None,
            };
            self.sync().set_profile(target, col, value).await?;
            return Ok(true);
        }
        let text = match &change {
            Change::Set(v) => Some(serde_json::to_string(v)?),
            Change::Delete => None,
        };
        self.db
            .set_custom_profile_field(target.as_str(), key, text.as_deref())
            .await?;
        Ok(false)
    }
}
