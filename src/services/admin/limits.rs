//! Per-user restrictions an admin sets: the shadow ban (the user's messages and invites are
//! answered as if sent, and go nowhere) and message rate-limit overrides. Both are kept in
//! memory, loaded at start and changed here, since the send path reads them on every event.

use ruma::UserId;
use serde_json::{json, Value};

use super::AdminFace;
use crate::{config::RateLimit, store::admin_users::UserFlag, util, Error, Result};

/// A rate-limit override as Synapse takes it: messages per second and burst, 0 for none.
#[derive(Debug, Clone, Copy, serde::Deserialize, Default)]
#[serde(default)]
pub struct RateLimitOverride {
    pub messages_per_second: Option<i64>,
    pub burst_count: Option<i64>,
}

fn as_limit(per_second: i64, burst: i64) -> RateLimit {
    RateLimit {
        per_second: per_second as f64,
        // A bucket that holds nothing would refuse every message.
        burst: burst.max(1) as f64,
    }
}

impl AdminFace<'_> {
    pub(super) async fn load_limits(self) -> Result<()> {
        let banned = self.db.flagged_users(UserFlag::ShadowBanned).await?;
        *self.admin_state.shadow_banned.write() = banned.into_iter().collect();
        let overrides = self.db.ratelimit_overrides().await?;
        *self.admin_state.message_limits.write() = overrides
            .into_iter()
            .map(|(u, p, b)| (u, as_limit(p, b)))
            .collect();
        Ok(())
    }

    /// Whether the user is shadow-banned.
    pub fn is_shadow_banned(self, user: &UserId) -> bool {
        let set = self.admin_state.shadow_banned.read();
        !set.is_empty() && set.contains(user.as_str())
    }

    /// The id answered to a shadow-banned user for an event that is not sent: shaped like a
    /// real one, known to nobody.
    pub fn phantom_event_id(self) -> ruma::OwnedEventId {
        ruma::OwnedEventId::try_from(format!("${}", util::random_string(43)))
            .unwrap_or_else(|_| ruma::OwnedEventId::try_from("$phantom").expect("valid event id"))
    }

    /// The message rate limit of this user: his override, else `[rate_limits] message`.
    pub fn message_limit(self, user: &UserId) -> RateLimit {
        let map = self.admin_state.message_limits.read();
        match map.get(user.as_str()) {
            Some(l) => *l,
            None => self.config.rate_limits.message,
        }
    }

    /// `POST`/`DELETE /_synapse/admin/v1/users/{id}/shadow_ban`.
    pub async fn set_shadow_banned(self, user: &UserId, banned: bool) -> Result<()> {
        self.user_row(user).await?;
        self.db
            .set_user_flag(user.as_str(), UserFlag::ShadowBanned, banned)
            .await?;
        {
            let mut set = self.admin_state.shadow_banned.write();
            if banned {
                set.insert(user.to_string());
            } else {
                set.remove(user.as_str());
            }
        }
        self.state_changed().await;
        Ok(())
    }

    /// `GET /_synapse/admin/v1/users/{id}/override_ratelimit`: `{}` without an override.
    pub async fn ratelimit_override(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        Ok(match self.db.ratelimit_override(user.as_str()).await? {
            Some((p, b)) => json!({ "messages_per_second": p, "burst_count": b }),
            None => json!({}),
        })
    }

    /// `POST` (`Some`) or `DELETE` (`None`) `/_synapse/admin/v1/users/{id}/override_ratelimit`.
    /// 0 per second means no limit at all.
    pub async fn set_ratelimit_override(
        self,
        user: &UserId,
        value: Option<RateLimitOverride>,
    ) -> Result<Value> {
        self.user_row(user).await?;
        let Some(v) = value else {
            self.db.set_ratelimit_override(user.as_str(), None).await?;
            self.admin_state
                .message_limits
                .write()
                .remove(user.as_str());
            self.state_changed().await;
            return Ok(json!({}));
        };
        let per_second = v.messages_per_second.unwrap_or(0);
        let burst = v.burst_count.unwrap_or(0);
        if per_second < 0 {
            return Err(Error::invalid_param(
                "messages_per_second is a positive integer",
            ));
        }
        if burst < 0 {
            return Err(Error::invalid_param("burst_count is a positive integer"));
        }
        self.db
            .set_ratelimit_override(user.as_str(), Some((per_second, burst)))
            .await?;
        self.admin_state
            .message_limits
            .write()
            .insert(user.to_string(), as_limit(per_second, burst));
        self.state_changed().await;
        Ok(json!({ "messages_per_second": per_second, "burst_count": burst }))
    }
}
