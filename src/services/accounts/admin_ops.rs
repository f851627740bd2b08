//! What the admin API does to accounts, with the accounts area's own rules: creating an account
//! without registration, passwords set by an admin, reactivation, the list of bound addresses,
//! and dropping cached tokens when a flag changes.

use ruma::{OwnedUserId, UserId};

use super::{AccountsFace, RegistrationAuth};
use crate::{Error, Result};

impl AccountsFace<'_> {
    /// Creates an account for an admin (`PUT /v2/users/{id}`): no UIA, no login; the
    /// password, when given, follows the password rules.
    pub async fn create_user_admin(
        self,
        localpart: &str,
        password: Option<&str>,
        admin: bool,
    ) -> Result<OwnedUserId> {
        let (user_id, _) = self
            .register(
                Some(localpart),
                password,
                admin,
                None,
                None,
                false,
                false,
                &RegistrationAuth::default(),
            )
            .await?;
        Ok(user_id)
    }

    /// Sets a password for an admin; `logout` deletes every device (as Synapse's
    /// `logout_devices`, default true).
    pub async fn admin_set_password(
        self,
        user: &UserId,
        password: &str,
        logout: bool,
    ) -> Result<()> {
        self.policy().check_password_strength(password)?;
        let hash = self.hash_password(password).await?;
        self.db.set_password_hash(user.as_str(), &hash).await?;
        if logout {
            self.logout_all(user).await?;
        }
        Ok(())
    }

    /// Reactivates a deactivated account with a new password.
    pub async fn reactivate(self, user: &UserId, password: &str) -> Result<()> {
        self.policy().check_password_strength(password)?;
        let hash = self.hash_password(password).await?;
        self.db.reactivate_user(user.as_str(), Some(&hash)).await?;
        self.policy().annuaire_touch(user).await;
        Ok(())
    }

    /// Makes the account's bound addresses exactly `list` (medium, address): the missing ones
    /// are bound (refused when another account has one), the others unbound.
    pub async fn admin_set_threepids(self, user: &UserId, list: &[(String, String)]) -> Result<()> {
        let wanted: Vec<(String, String)> = list
            .iter()
            .map(|(m, a)| {
                let a = if m == "email" {
                    a.to_lowercase()
                } else {
                    a.clone()
                };
                (m.clone(), a)
            })
            .collect();
        for (m, a) in &wanted {
            if let Some(owner) = self.db.threepid_owner(m, a).await? {
                if owner != user.as_str() {
                    return Err(Error::threepid_in_use(
                        "Address already bound to another user",
                    ));
                }
            }
        }
        let current = self.db.user_threepids(user.as_str()).await?;
        for t in &current {
            if !wanted
                .iter()
                .any(|(m, a)| *m == t.medium && *a == t.address)
            {
                self.db
                    .unbind_threepid(&t.medium, &t.address, user.as_str())
                    .await?;
            }
        }
        let now = crate::util::now_ms();
        for (m, a) in &wanted {
            if current.iter().any(|t| t.medium == *m && t.address == *a) {
                continue;
            }
            let mut tx = self.db.begin_write().await?;
            let bound =
                crate::store::Db::bind_threepid(&mut tx.tx, m, a, user.as_str(), now, now).await?;
            tx.commit().await?;
            if !bound {
                return Err(Error::threepid_in_use(
                    "Address already bound to another user",
                ));
            }
            if m == "email" {
                self.policy().email_bound(user, a).await;
            }
        }
        self.policy().annuaire_touch(user).await;
        Ok(())
    }

    /// Drops the user's cached access tokens: the next request reads the account again (a lock
    /// or a deactivation counts at once).
    pub async fn forget_user_tokens(self, user: &UserId) -> Result<()> {
        let hashes = self.db.token_hashes(user.as_str(), None).await?;
        self.forget_tokens(&hashes).await;
        Ok(())
    }
}

impl AccountsFace<'_> {
    /// A session opened for `user` by the admin `by` (`POST /v1/users/{id}/login`): a new
    /// device named after the admin, so the user sees it among his devices and can end it
    /// (Synapse's puppet token has no device; see docs/admin-api.md). `valid_until_ms`: when
    /// the token stops working.
    pub async fn admin_login_as(
        self,
        by: &UserId,
        user: &UserId,
        valid_until_ms: Option<i64>,
    ) -> Result<String> {
        let name = format!("Admin session ({by})");
        let (_, access) = self.admin_session(user, &name, valid_until_ms).await?;
        Ok(access)
    }

    /// A new device with an access token (no refresh token): (device id, token).
    pub async fn admin_session(
        self,
        user: &UserId,
        device_name: &str,
        valid_until_ms: Option<i64>,
    ) -> Result<(String, String)> {
        let access = crate::util::random_token("pat");
        let device = crate::util::random_string(10).to_uppercase();
        let now = crate::util::now_ms();
        let mut tx = self.db.begin_write().await?;
        crate::store::Db::insert_device_with_token(
            &mut tx.tx,
            user.as_str(),
            &device,
            Some(device_name),
            &crate::util::hash_secret(&access),
            valid_until_ms,
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((device, access))
    }

    /// Creates a device without a session (`POST /v2/users/{id}/devices`); an existing one is
    /// left as it is.
    pub async fn admin_create_device(self, user: &UserId, device_id: &str) -> Result<()> {
        if device_id.is_empty() || device_id.len() > 255 || device_id.chars().any(char::is_control)
        {
            return Err(Error::invalid_param("Invalid device_id"));
        }
        let mut tx = self.db.begin_write().await?;
        crate::store::Db::insert_device(
            &mut tx.tx,
            user.as_str(),
            device_id,
            None,
            crate::util::now_ms(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
