//! Email validation (spec: "Adding Account Administrative Contact Information", the
//! `requestToken` endpoints and the `m.login.email.identity` stage) and the addresses bound to
//! an account. A session is started by `requestToken`, validated by the link or the code of the
//! email it sends, then used once: to register, to add the address, or to reset the password.

use crate::services::accounts::AccountsFace;
use crate::services::requester::ThreepidCreds;
use rand::RngExt;
use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    services::policy::email,
    services::requester::Requester,
    store::{
        threepid_sessions::{NewSession, ThreepidSession},
        Db,
    },
    util, Error, Result,
};

/// How long a validation session (link and code) lives.
pub const SESSION_LIFETIME_MS: i64 = 24 * 3_600_000;

/// Longest accepted `next_link`.
const MAX_NEXT_LINK: usize = 2048;

/// What a validated address will be used for: sessions of one purpose serve no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Registration,
    AddThreepid,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Registration => "registration",
            Purpose::AddThreepid => "add_threepid",
            Purpose::PasswordReset => "password_reset",
        }
    }

    /// The path of the link sent by email (GET; Synapse's paths).
    pub fn link_path(self) -> &'static str {
        match self {
            Purpose::Registration => "/_matrix/client/unstable/registration/email/submit_token",
            Purpose::AddThreepid => "/_matrix/client/unstable/add_threepid/email/submit_token",
            Purpose::PasswordReset => "/_synapse/client/password_reset/email/submit_token",
        }
    }

    /// The `submit_url` handed to clients: POST `{sid, client_secret, token}` with the code.
    pub fn submit_path(self) -> &'static str {
        match self {
            Purpose::Registration => "/_matrix/client/unstable/registration/email/submit_token",
            Purpose::AddThreepid => "/_matrix/client/unstable/add_threepid/email/submit_token",
            Purpose::PasswordReset => "/_matrix/client/unstable/password_reset/email/submit_token",
        }
    }
}

/// A `requestToken` body.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub client_secret: String,
    pub email: String,
    pub send_attempt: i64,
    pub next_link: Option<String>,
}

/// `[0-9a-zA-Z.=_-]{1,255}`: the spec's shape of a client secret, and of the sids we issue.
fn check_opaque(value: &str, what: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 255
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".=_-".contains(c))
    {
        return Err(Error::invalid_param(format!("Invalid {what}")));
    }
    Ok(())
}

pub fn check_client_secret(secret: &str) -> Result<()> {
    check_opaque(secret, "client_secret")
}

fn check_sid(sid: &str) -> Result<()> {
    check_opaque(sid, "sid")
}

/// A `next_link` we may redirect to: http(s) only, bounded.
pub fn safe_next_link(link: &str) -> bool {
    link.len() <= MAX_NEXT_LINK
        && (link.starts_with("https://") || link.starts_with("http://"))
        && !link.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn code_hash(client_secret: &str, code: &str) -> String {
    util::hash_secret(&format!("{client_secret}:{code}"))
}

impl AccountsFace<'_> {
    fn link(self, purpose: Purpose, token: &str, client_secret: &str, sid: &str) -> String {
        format!(
            "{}{}?token={}&client_secret={}&sid={}",
            self.config.public_baseurl().trim_end_matches('/'),
            purpose.link_path(),
            util::query_encode(token),
            util::query_encode(client_secret),
            util::query_encode(sid),
        )
    }

    /// `POST …/email/requestToken` for registration, adding an address, or a password reset.
    /// Answers `{sid, submit_url}`; a repeated `send_attempt` returns the same sid unsent.
    pub async fn request_email_token(
        self,
        purpose: Purpose,
        req: TokenRequest,
        ip: &str,
    ) -> Result<Value> {
        check_client_secret(&req.client_secret)?;
        if !email::is_valid(&req.email) {
            return Err(Error::invalid_param("Invalid email address"));
        }
        if req.send_attempt < 0 {
            return Err(Error::invalid_param("Invalid send_attempt"));
        }
        if let Some(l) = &req.next_link {
            if !safe_next_link(l) {
                return Err(Error::invalid_param("Invalid next_link"));
            }
        }
        let address = email::normalise(&req.email);
        let limit = self.config.rate_limits.registration;
        self.ratelimit.check("threepid_ip", ip, limit)?;
        self.ratelimit.check("threepid_address", &address, limit)?;
        self.mailer.require()?;
        let owner = match purpose {
            Purpose::Registration => {
                self.check_registration_open()?;
                self.policy().email_registration_gate(&address).await?;
                self.db.threepid_owner("email", &address).await?
            }
            Purpose::AddThreepid => {
                self.policy().email_registration_gate(&address).await?;
                if self.db.threepid_owner("email", &address).await?.is_some() {
                    return Err(Error::threepid_in_use("Email address is already in use"));
                }
                None
            }
            Purpose::PasswordReset => {
                if self.db.threepid_owner("email", &address).await?.is_none() {
                    return Err(Error::threepid_not_found(
                        "Email address is not bound to an account",
                    ));
                }
                None
            }
        };
        // Registering an address in use must look like any registration: a session is made
        // (one that can never validate) and the owner is told by email.
        let in_use = owner.is_some();
        let token = util::random_string(32);
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let now = util::now_ms();
        let token_hash = util::hash_secret(&token);
        let code_hash = code_hash(&req.client_secret, &code);
        let (sid, send) = self
            .db
            .start_threepid_session(&NewSession {
                sid: &util::random_string(24),
                client_secret: &req.client_secret,
                medium: "email",
                address: &address,
                purpose: purpose.as_str(),
                send_attempt: req.send_attempt,
                token_hash: (!in_use).then_some(token_hash.as_str()),
                code_hash: (!in_use).then_some(code_hash.as_str()),
                next_link: req.next_link.as_deref(),
                now,
                expires_ts: now + SESSION_LIFETIME_MS,
            })
            .await?;
        if send {
            let app = &self.mailer.app_name;
            let (subject, body) = if in_use {
                (
                    format!("{app}: this address already has an account"),
                    format!(
                        "Hello,\n\nSomeone (maybe you) tried to create a {app} account with this \
                         email address, but it already has one. You can log in with it, or reset \
                         your password if you forgot it.\n\nIf this was not you, you can ignore \
                         this email.\n"
                    ),
                )
            } else {
                let link = self.link(purpose, &token, &req.client_secret, &sid);
                let what = match purpose {
                    Purpose::Registration => format!("create your {app} account"),
                    Purpose::AddThreepid => format!("add this address to your {app} account"),
                    Purpose::PasswordReset => format!("reset your {app} password"),
                };
                (
                    format!("{app}: validate your email address"),
                    format!(
                        "Hello,\n\nTo {what}, enter this code: {code}\n\nor open this link:\n\
                         {link}\n\nThe code and the link are valid for 24 hours. If you did not \
                         ask for this, ignore this email.\n"
                    ),
                )
            };
            self.mailer.send(&address, &subject, body).await?;
        }
        Ok(json!({
            "sid": sid,
            "submit_url": format!(
                "{}{}",
                self.config.public_baseurl().trim_end_matches('/'),
                purpose.submit_path()
            ),
        }))
    }

    /// Validates a session with the link's token or the emailed code. Wrong secrets are
    /// 400 `M_THREEPID_AUTH_FAILED`.
    pub async fn submit_email_token(
        self,
        purpose: Purpose,
        sid: &str,
        client_secret: &str,
        token: &str,
    ) -> Result<ThreepidSession> {
        let failed = || Error::threepid_auth_failed("Invalid or expired token");
        check_sid(sid).map_err(|_| failed())?;
        check_client_secret(client_secret).map_err(|_| failed())?;
        if token.is_empty() || token.len() > 255 {
            return Err(failed());
        }
        let session = self
            .db
            .validate_threepid_session(
                sid,
                client_secret,
                purpose.as_str(),
                &util::hash_secret(token),
                &code_hash(client_secret, token),
                util::now_ms(),
            )
            .await?
            .ok_or_else(failed)?;
        Ok(session)
    }

    /// The address of a validated, unused session for `purpose`, or `None`.
    pub(super) async fn validated_email(
        self,
        purpose: Purpose,
        creds: &ThreepidCreds,
    ) -> Result<Option<String>> {
        if check_sid(&creds.sid).is_err() || check_client_secret(&creds.client_secret).is_err() {
            return Ok(None);
        }
        Ok(self
            .db
            .validated_threepid_session(
                &creds.sid,
                &creds.client_secret,
                purpose.as_str(),
                util::now_ms(),
            )
            .await?
            .map(|s| s.address))
    }

    // ---- bound addresses (`/account/3pid`) ----

    pub async fn list_threepids(self, user: &UserId) -> Result<Value> {
        let rows = self.db.user_threepids(user.as_str()).await?;
        let list: Vec<Value> = rows
            .into_iter()
            .map(|t| {
                json!({
                    "medium": t.medium,
                    "address": t.address,
                    "validated_at": t.validated_ts,
                    "added_at": t.added_ts,
                })
            })
            .collect();
        Ok(json!({ "threepids": list }))
    }

    /// `/account/3pid/add` after UIA: binds the address of a validated add_threepid session.
    pub async fn add_threepid(self, requester: &Requester, creds: &ThreepidCreds) -> Result<()> {
        let not_validated = || Error::threepid_auth_failed("No validated email for this session");
        let address = self
            .validated_email(Purpose::AddThreepid, creds)
            .await?
            .ok_or_else(not_validated)?;
        let now = util::now_ms();
        let mut tx = self.db.begin_write().await?;
        Db::take_threepid_session(
            &mut tx.tx,
            &creds.sid,
            &creds.client_secret,
            Purpose::AddThreepid.as_str(),
            now,
        )
        .await?
        .ok_or_else(not_validated)?;
        if !Db::bind_threepid(
            &mut tx.tx,
            "email",
            &address,
            requester.user_id.as_str(),
            now,
            now,
        )
        .await?
        {
            return Err(Error::threepid_in_use("Email address is already in use"));
        }
        tx.commit().await?;
        self.policy()
            .email_bound(&requester.user_id, &address)
            .await;
        self.policy().annuaire_touch(&requester.user_id).await;
        Ok(())
    }

    /// `/account/3pid/delete`: unbinds an address of the caller (nothing to do when it is not
    /// theirs, as Synapse).
    pub async fn delete_threepid(self, user: &UserId, medium: &str, address: &str) -> Result<()> {
        if medium.len() > 32 || address.len() > email::MAX_ADDRESS {
            return Err(Error::invalid_param("Invalid threepid"));
        }
        let address = if medium == "email" {
            email::normalise(address)
        } else {
            address.to_owned()
        };
        if self
            .db
            .unbind_threepid(medium, &address, user.as_str())
            .await?
        {
            self.policy().annuaire_touch(user).await;
        }
        Ok(())
    }

    /// Unauthenticated `POST /account/password`: the `m.login.email.identity` stage with a
    /// validated password_reset session, else the 401 challenge naming that stage.
    pub async fn reset_password_unauthenticated(
        self,
        auth: Option<crate::services::requester::AuthData>,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<()> {
        crate::services::accounts::check_uia_session(auth.as_ref())?;
        let creds = auth
            .filter(|a| a.kind.as_deref() == Some("m.login.email.identity"))
            .and_then(|a| a.threepid_creds);
        let Some(creds) = creds else {
            return Err(Error::auth_challenge()
                .with_extra("flows", json!([{ "stages": ["m.login.email.identity"] }]))
                .with_extra("params", json!({}))
                .with_extra("session", json!(util::random_string(24))));
        };
        self.reset_password_by_email(&creds, new_password, logout_devices)
            .await
    }

    /// A password reset with a validated password_reset session.
    async fn reset_password_by_email(
        self,
        creds: &ThreepidCreds,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<()> {
        self.policy().check_password_strength(new_password)?;
        let not_validated = || Error::threepid_auth_failed("No validated email for this session");
        let address = self
            .validated_email(Purpose::PasswordReset, creds)
            .await?
            .ok_or_else(not_validated)?;
        let owner = self
            .db
            .threepid_owner("email", &address)
            .await?
            .ok_or_else(|| Error::threepid_not_found("Email address is not bound"))?;
        let user_id = UserId::parse(&owner).map_err(|_| Error::unknown("Bad stored user id"))?;
        let hash = self.hash_password(new_password).await?;
        let mut tx = self.db.begin_write().await?;
        Db::take_threepid_session(
            &mut tx.tx,
            &creds.sid,
            &creds.client_secret,
            Purpose::PasswordReset.as_str(),
            util::now_ms(),
        )
        .await?
        .ok_or_else(not_validated)?;
        Db::reset_password_hash(&mut tx.tx, user_id.as_str(), &hash).await?;
        tx.commit().await?;
        if logout_devices {
            self.logout_all(&user_id).await?;
        }
        Ok(())
    }
}
