//! The named points where Tchap work in one area tells another area that something changed.
//! Each body is owned by one area (named in its doc); the others only call it.

use crate::services::policy::PolicyFace;
use ruma::UserId;

use crate::Result;

impl PolicyFace<'_> {
    /// A local user's annuaire entry may have changed: registration, display name or avatar,
    /// bound emails, `im.vector.hide_profile`, expiry or renewal, deactivation. Cheap to call;
    /// never fails the caller's request. Owned by the annuaire (`policy/annuaire`).
    pub async fn annuaire_touch(self, user: &UserId) {
        self.annuaire_touch_users(&[user]).await
    }

    /// An email address was just bound to a local user (registration or `/account/3pid/add`):
    /// pending email invitations for it are turned into room invites. Owned by email invites
    /// (`policy/email_invites`).
    pub async fn email_bound(self, user: &UserId, address: &str) {
        self.email_invites_bound(user, address).await
    }

    /// Whether a local account has expired (account validity, TCHAP.md §5); false when expiry
    /// is off. Owned by account validity (`policy/validity`).
    pub async fn account_expired(self, user: &UserId) -> Result<bool> {
        self.validity_expired(user).await
    }

    /// [`Self::account_expired`] for many local users at once (one query for those not
    /// cached): the ones that have expired. Owned by account validity (`policy/validity`).
    pub(super) async fn accounts_expired(
        self,
        users: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        self.validity_expired_among(users).await
    }
}
