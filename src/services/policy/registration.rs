//! Who may validate an email address on this server (TCHAP.md §2) and the password policy.
//!
//! The gate runs before any validation email is sent for a registration or for adding an
//! address: the rules must give this server for the address, and when the rule requires an
//! invitation the address must have a pending email invite. With Tchap off there is no gate.

use crate::services::policy::PolicyFace;
use serde_json::{json, Value};

use crate::{Error, Result};

impl<'a> PolicyFace<'a> {
    /// The stages of the one registration flow: email validation with Tchap (plus the token
    /// in token mode), else the dummy or token stage.
    pub fn registration_stages(self, token_mode: bool) -> Vec<&'static str> {
        match (self.policy_rules.enabled(), token_mode) {
            (true, true) => vec!["m.login.registration_token", "m.login.email.identity"],
            (true, false) => vec!["m.login.email.identity"],
            (false, true) => vec!["m.login.registration_token"],
            (false, false) => vec!["m.login.dummy"],
        }
    }

    /// Whether a registering client picks its localpart (`username`); with Tchap it comes from
    /// the validated address.
    pub fn client_chooses_localpart(self) -> bool {
        !self.policy_rules.enabled()
    }

    /// Whom a searcher may find in the user directory, as far as the Tchap rules decide: None
    /// with Tchap off (Synapse's rule applies), else whether the annuaire is open to them
    /// (agents: yes; externals: only the users they share a room with).
    pub fn annuaire_scope(self, searcher: &ruma::UserId) -> Option<bool> {
        self.policy_rules
            .enabled()
            .then(|| !self.policy_rules.is_external(searcher))
    }

    /// Whether `address` (normalised) may be validated here for a new account or a new bound
    /// address; 403 `M_THREEPID_DENIED` otherwise. Always allowed with Tchap off.
    pub async fn email_registration_gate(self, address: &str) -> Result<()> {
        if !self.policy_rules.enabled() {
            return Ok(());
        }
        let Some(home) = self.policy_rules.home_for_email(address) else {
            return Err(Error::threepid_denied(
                "This email address cannot be used on this server",
            ));
        };
        if home.server != self.server_name {
            return Err(Error::threepid_denied(
                "This email address belongs to another server",
            ));
        }
        if home.requires_invite && self.db.pending_email_invites(address).await?.is_empty() {
            return Err(Error::threepid_denied(
                "This email address needs an invitation to register",
            ));
        }
        Ok(())
    }

    /// The password policy in force: Tchap on and `password_policy.enabled`.
    fn password_policy(self) -> Option<&'a crate::config::PasswordPolicyConfig> {
        self.s
            .config
            .tchap
            .as_ref()
            .map(|t| &t.password_policy)
            .filter(|p| p.enabled)
    }

    /// `GET /password_policy`: `{}` when no policy is in force.
    pub fn password_policy_json(self) -> Value {
        match self.password_policy() {
            None => json!({}),
            Some(p) => json!({
                "m.minimum_length": p.minimum_length,
                "m.require_digit": p.require_digit,
                "m.require_symbol": p.require_symbol,
                "m.require_lowercase": p.require_lowercase,
                "m.require_uppercase": p.require_uppercase,
            }),
        }
    }

    /// A password acceptable for a new account, a change or a reset. Without a policy: not
    /// empty and at most 512 bytes; with one, also its rules, checked in Synapse's order
    /// (length, digit, symbol, upper case, lower case).
    pub fn check_password_strength(self, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(Error::weak_password("Password must not be empty"));
        }
        if password.len() > 512 {
            return Err(Error::invalid_param("Password is too long"));
        }
        let Some(p) = self.password_policy() else {
            return Ok(());
        };
        if password.chars().count() < p.minimum_length {
            return Err(Error::password_too_short(format!(
                "Password must be at least {} characters long",
                p.minimum_length
            )));
        }
        if p.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
            return Err(Error::password_no_digit("Password must contain a digit"));
        }
        if p.require_symbol && password.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::password_no_symbol("Password must contain a symbol"));
        }
        if p.require_uppercase && !password.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(Error::password_no_uppercase(
                "Password must contain an upper-case letter",
            ));
        }
        if p.require_lowercase && !password.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(Error::password_no_lowercase(
                "Password must contain a lower-case letter",
            ));
        }
        Ok(())
    }
}
