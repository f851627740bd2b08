//! Who may read a profile under Tchap (TCHAP.md §6). An external sees the profiles of the
//! users he shares a room with (each joined or invited), and only those; an agent on the
//! "liste rouge" (`im.vector.hide_profile`) is shown only to the users sharing a room with him
//! — the others could not find him in the annuaire either. Over federation the same rules
//! hold per asking server: an externals server, or anyone asking about a hidden agent, is
//! answered only when one of its users shares a room with the target. A refusal is Synapse's
//! `limit_profile_requests_to_users_who_share_rooms` answer. Tchap off: everyone may.

use crate::services::policy::PolicyFace;
use ruma::{ServerName, UserId};

use super::annuaire::hidden;
use crate::{Error, Result};

/// The refusal (Synapse's words and code).
fn unavailable() -> Error {
    Error::forbidden("Profile isn't available")
}

impl PolicyFace<'_> {
    /// Whether `requester` (a local user) may read `target`'s profile through the client API.
    /// Asked before the profile is looked up, so a refusal says nothing of whether it exists.
    pub async fn policy_may_read_profile(self, requester: &UserId, target: &UserId) -> Result<()> {
        if !self.policy_rules.enabled() || requester == target {
            return Ok(());
        }
        if !self.policy_rules.is_external(requester) && !self.profile_withheld(target).await? {
            return Ok(());
        }
        if self
            .db
            .share_a_room_or_invited(requester.as_str(), target.as_str())
            .await?
        {
            return Ok(());
        }
        Err(unavailable())
    }

    /// Whether server `origin` may be told the profile of the local user `target`
    /// (`/_matrix/federation/v1/query/profile`).
    pub async fn policy_may_serve_profile(
        self,
        origin: &ServerName,
        target: &UserId,
    ) -> Result<()> {
        if !self.policy_rules.enabled() {
            return Ok(());
        }
        if !self.policy_rules.is_external_server(origin) && !self.profile_withheld(target).await? {
            return Ok(());
        }
        if self
            .db
            .shares_room_with_server_or_invited(target.as_str(), origin.as_str())
            .await?
        {
            return Ok(());
        }
        Err(unavailable())
    }

    /// Whether an agent's profile is kept from those who cannot find him in the annuaire. A
    /// local user: his `im.vector.hide_profile`. A remote one: his replicated entry, when it is
    /// an agent's and invisible (hidden, expired or deactivated there: the entry does not say
    /// which, and all three are out of the annuaire; his server applies its own rule too).
    async fn profile_withheld(self, target: &UserId) -> Result<bool> {
        if self.is_local(target) {
            let content = self
                .db
                .get_account_data(target.as_str(), "", "im.vector.hide_profile")
                .await?;
            return Ok(hidden(content.as_deref()));
        }
        Ok(self
            .db
            .annuaire_entries_of(&[target.to_string()])
            .await?
            .first()
            .is_some_and(|e| !e.external && !e.visible))
    }
}
