//! Accounts: registration, login, access and refresh tokens, user-interactive auth, devices,
//! passwords, deactivation.

crate::services::face!(
    /// The face of accounts: registration, login, tokens, devices, profiles, 3PIDs.
    AccountsFace
);

mod admin_ops;
pub mod openid;
pub mod profile_fields;
pub mod threepid;
pub mod user_directory;

use std::collections::HashMap;

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::services::federation::edus::DeviceChange;
use crate::services::policy::email;
use crate::services::{
    accounts::threepid::Purpose,
    requester::{AuthData, Requester, ThreepidCreds},
};
use crate::{
    config::RegistrationMode,
    store::{users::DeviceRow, Db},
    util, Error, Result,
};

#[derive(Clone)]
struct CachedToken {
    user_id: OwnedUserId,
    device_id: String,
    expires_ts: Option<i64>,
    /// Issued by /refresh and not used yet: its refresh token's hash (predecessors to revoke).
    rotating: Option<String>,
    /// When it was read from the database (in a cluster, an entry is read again after
    /// [`CLUSTER_TOKEN_TTL`]: the bound on a lost revocation notice).
    read_at: std::time::Instant,
}

/// How long a node of a cluster trusts a cached token without reading it again.
const CLUSTER_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Access tokens already resolved, keyed by their hash; entries are dropped on logout.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<String, CachedToken>>,
    /// Bumped by every revocation: a database read that raced one is not cached.
    generation: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// The tokens cached now.
    pub fn entries(&self) -> usize {
        self.map.lock().len()
    }
}

/// What a successful login or registration hands back.
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<i64>,
}

impl Session {
    pub fn to_json(&self, server_name: &str) -> Value {
        let mut v = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
            "home_server": server_name,
        });
        if let Some(r) = &self.refresh_token {
            v["refresh_token"] = json!(r);
        }
        if let Some(e) = self.expires_in_ms {
            v["expires_in_ms"] = json!(e);
        }
        v
    }
}

/// What a completed registration UIA hands to [`Services::register`].
#[derive(Debug, Default)]
pub struct RegistrationAuth {
    /// The registration token used, to count its use.
    pub token: Option<String>,
    /// The validated email session (Tchap), used once by the registration.
    pub email: Option<ThreepidCreds>,
    /// The UIA session, deleted once the account exists.
    pub session: Option<String>,
}

/// Rate-limit action of failed password checks, per account (`rate_limits.login_failures`).
const LOGIN_FAILURES: &str = "login_failures";

/// Longest UIA session id accepted (ours are 24 characters).
pub const MAX_UIA_SESSION: usize = 255;

/// Refuses a UIA `auth` whose session id is too long (400 `M_INVALID_PARAM`): every endpoint
/// taking `auth` calls this first, whether or not it ends up asking for a stage.
pub fn check_uia_session(auth: Option<&AuthData>) -> Result<()> {
    match auth.and_then(|a| a.session.as_deref()) {
        Some(s) if s.len() > MAX_UIA_SESSION => Err(Error::invalid_param("Invalid session")),
        _ => Ok(()),
    }
}

const LOCALPART_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789._=-/+";

/// A valid localpart for a new account (historical upper-case ids are not allowed for new users).
pub fn check_localpart(localpart: &str, server_name: &str) -> Result<()> {
    if localpart.is_empty() || !localpart.chars().all(|c| LOCALPART_CHARS.contains(c)) {
        return Err(Error::invalid_username(
            "User ID may only contain a-z, 0-9, . _ = - / +",
        ));
    }
    if localpart.len() + server_name.len() + 2 > 255 {
        return Err(Error::invalid_username("User ID is too long"));
    }
    Ok(())
}

impl AccountsFace<'_> {
    fn argon2(self) -> Argon2<'static> {
        let p = &self.config.password_hashing;
        let params =
            Params::new(p.memory_kib.max(8), p.iterations.max(1), 1, None).unwrap_or_default();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn hash_password(self, password: &str) -> Result<String> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| Error::unknown(e.to_string()))?;
        let argon = self.argon2();
        let pw = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            rand::fill(&mut salt);
            let salt = SaltString::encode_b64(&salt).map_err(|e| Error::unknown(e.to_string()))?;
            argon
                .hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::unknown(e.to_string()))
        })
        .await
        .map_err(|e| Error::unknown(e.to_string()))?
    }

    /// Constant-time verification (argon2 compares in constant time); a missing hash still costs
    /// one hash so timing does not reveal which accounts exist.
    async fn verify_password(self, hash: Option<String>, password: &str) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let argon = self.argon2();
        let pw = password.to_owned();
        tokio::task::spawn_blocking(move || match hash.as_deref().map(PasswordHash::new) {
            Some(Ok(parsed)) => argon.verify_password(pw.as_bytes(), &parsed).is_ok(),
            _ => {
                let salt = SaltString::encode_b64(b"palabre-dummy-salt").ok();
                if let Some(s) = salt {
                    let _ = argon.hash_password(pw.as_bytes(), &s);
                }
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    // ---- tokens ----

    /// Resolves an access token to its requester.
    pub async fn authenticate(self, token: &str) -> Result<Requester> {
        let hash = util::hash_secret(token);
        let now = util::now_ms();
        let cached = self
            .tokens
            .map
            .lock()
            .get(&hash)
            .filter(|c| !self.cluster.shared() || c.read_at.elapsed() < CLUSTER_TOKEN_TTL)
            .cloned();
        self.metrics
            .cache_lookup(crate::metrics::CACHE_TOKENS, cached.is_some());
        let entry = match cached {
            Some(c) => c,
            None => {
                let generation = self
                    .tokens
                    .generation
                    .load(std::sync::atomic::Ordering::Acquire);
                let row = self
                    .db
                    .get_token(&hash)
                    .await?
                    .ok_or_else(|| Error::unknown_token("Unknown access token"))?;
                let user = self
                    .db
                    .get_user(&row.user_id)
                    .await?
                    .ok_or_else(|| Error::unknown_token("Unknown user"))?;
                if user.locked == 1 {
                    return Err(locked());
                }
                let user_id =
                    UserId::parse(&row.user_id).map_err(|_| Error::unknown_token("Bad user"))?;
                let c = CachedToken {
                    user_id,
                    device_id: row.device_id,
                    expires_ts: row.expires_ts,
                    rotating: (row.pending_rotation == 1)
                        .then(|| row.refresh_hash.clone())
                        .flatten(),
                    read_at: std::time::Instant::now(),
                };
                {
                    let mut map = self.tokens.map.lock();
                    if self
                        .tokens
                        .generation
                        .load(std::sync::atomic::Ordering::Acquire)
                        == generation
                    {
                        map.insert(hash.clone(), c.clone());
                    }
                }
                c
            }
        };
        if let Some(refresh_hash) = &entry.rotating {
            self.complete_rotation(&entry.user_id, &entry.device_id, refresh_hash)
                .await?;
        }
        if entry.expires_ts.is_some_and(|e| e <= now) {
            return Err(Error::unknown_token("Access token has expired").soft_logout());
        }
        Ok(Requester {
            user_id: entry.user_id,
            device_id: entry.device_id,
        })
    }

    /// Whether `user` is a server admin now: read from the `users` row at each call, never
    /// from the token cache, so a promotion or demotion (by any process sharing the database)
    /// counts from the next request. Admin checks are rare; the read is one primary-key lookup.
    pub async fn is_admin(self, user: &UserId) -> Result<bool> {
        Ok(self
            .db
            .get_user(user.as_str())
            .await?
            .is_some_and(|u| u.is_admin == 1 && u.deactivated == 0))
    }

    /// Drops every cached token of one device (after its tokens were replaced), here and on
    /// the other nodes of a cluster.
    async fn forget_device(self, user: &UserId, device: &str) {
        self.forget_device_here(user, device);
        self.tell_cluster(crate::services::cluster::tokens_notice(
            Some((user, device)),
            &[],
        ))
        .await;
    }

    async fn forget_tokens(self, hashes: &[String]) {
        self.forget_tokens_here(hashes);
        self.tell_cluster(crate::services::cluster::tokens_notice(None, hashes))
            .await;
    }

    /// [`Self::forget_device`] on this node only (another node's notice).
    pub fn forget_device_here(self, user: &UserId, device: &str) {
        let mut map = self.tokens.map.lock();
        self.tokens
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.retain(|_, c| !(c.user_id == user && c.device_id == device));
    }

    /// Drops cached tokens on this node only (another node's notice).
    pub fn forget_tokens_here(self, hashes: &[String]) {
        let mut map = self.tokens.map.lock();
        self.tokens
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        for h in hashes {
            map.remove(h);
        }
    }

    /// Drops every cached token on this node (the cluster's notices were perhaps lost).
    pub fn forget_all_tokens_here(self) {
        let mut map = self.tokens.map.lock();
        self.tokens
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.clear();
    }

    fn new_tokens(self, refresh: bool) -> (String, Option<String>, Option<i64>) {
        let access = util::random_token("pat");
        if refresh {
            (
                access,
                Some(util::random_token("prt")),
                Some(self.config.refreshable_access_token_lifetime_ms),
            )
        } else {
            (access, None, None)
        }
    }

    /// Creates a device (or reuses `device_id`) with fresh tokens inside an open transaction.
    async fn open_session(
        self,
        tx: &mut crate::store::Tx,
        user_id: &UserId,
        device_id: Option<String>,
        display_name: Option<&str>,
        refresh: bool,
    ) -> Result<Session> {
        let device_id = device_id.unwrap_or_else(|| util::random_string(10).to_uppercase());
        if device_id.is_empty() || device_id.len() > 255 {
            return Err(Error::invalid_param("Invalid device_id"));
        }
        let (access, refresh_token, lifetime) = self.new_tokens(refresh);
        let now = util::now_ms();
        Db::insert_device_with_token(
            tx,
            user_id.as_str(),
            &device_id,
            display_name,
            &util::hash_secret(&access),
            lifetime.map(|l| now + l),
            refresh_token.as_deref().map(util::hash_secret).as_deref(),
            now,
        )
        .await?;
        Ok(Session {
            user_id: user_id.to_owned(),
            device_id,
            access_token: access,
            refresh_token,
            expires_in_ms: lifetime,
        })
    }

    // ---- registration ----

    /// The one registration flow: email validation with Tchap (plus the token in token mode),
    /// else the dummy or token stage.
    fn registration_stages(self) -> Vec<&'static str> {
        self.policy()
            .registration_stages(self.config.registration == RegistrationMode::Token)
    }

    fn registration_flows(self) -> Value {
        json!([{ "stages": self.registration_stages() }])
    }

    /// Checks the UIA `auth` of a registration; Err carries the 401 flows answer. Completed
    /// stages are remembered in the UIA session (`uia_sessions.completed`, a JSON object of
    /// stage → what it proved) until every stage of the flow is done.
    pub async fn registration_auth(self, auth: Option<AuthData>) -> Result<RegistrationAuth> {
        let stages = self.registration_stages();
        let flows = self.registration_flows();
        check_uia_session(auth.as_ref())?;
        let given = auth.as_ref().and_then(|a| a.session.clone());
        let session = given.clone().unwrap_or_else(|| util::random_string(24));
        let mut done = serde_json::Map::new();
        if let Some(s) = &given {
            // A session of a logged-in user's UIA never counts for a registration.
            if let Some((None, completed)) = self.db.uia_get(s).await? {
                if let Ok(Value::Object(m)) = serde_json::from_str(&completed) {
                    done = m;
                }
            }
        }
        let challenge = |done: &serde_json::Map<String, Value>| {
            strip_errcode(
                Error::auth_required("Additional authentication required")
                    .with_extra("flows", flows.clone())
                    .with_extra("params", json!({}))
                    .with_extra("session", json!(session))
                    .with_extra("completed", json!(done.keys().collect::<Vec<_>>())),
            )
        };
        let Some(auth) = auth else {
            self.db
                .uia_put(
                    &session,
                    None,
                    &Value::Object(done.clone()).to_string(),
                    util::now_ms(),
                )
                .await?;
            return Err(challenge(&done));
        };
        let mut failure: Option<(&'static str, &'static str)> = None;
        match auth.kind.as_deref() {
            Some(k) if !stages.contains(&k) => {}
            Some("m.login.dummy") => {
                done.insert("m.login.dummy".into(), json!(true));
            }
            Some("m.login.registration_token") => {
                failure = self
                    .registration_token_stage(&session, &mut done, auth.token.as_deref())
                    .await?;
            }
            Some("m.login.email.identity") => match &auth.threepid_creds {
                None => failure = Some(("M_MISSING_PARAM", "Missing threepid_creds")),
                Some(creds) => {
                    if self
                        .validated_email(Purpose::Registration, creds)
                        .await?
                        .is_some()
                    {
                        done.insert("m.login.email.identity".into(), json!(creds));
                    } else {
                        failure = Some(("M_UNAUTHORIZED", "Email address not validated yet"));
                    }
                }
            },
            _ => {}
        }
        if stages.iter().all(|s| done.contains_key(*s)) {
            let token = done
                .get("m.login.registration_token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let email = done
                .get("m.login.email.identity")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            // A session that holds a token's pending use is consumed by the registration.
            let session = given.or_else(|| token.as_ref().map(|_| session.clone()));
            return Ok(RegistrationAuth {
                token,
                email,
                session,
            });
        }
        self.db
            .uia_put(
                &session,
                None,
                &Value::Object(done.clone()).to_string(),
                util::now_ms(),
            )
            .await?;
        let mut e = challenge(&done);
        if let Some((code, msg)) = failure {
            e = e
                .with_extra("errcode", json!(code))
                .with_extra("error", json!(msg));
        }
        Err(e)
    }

    /// `m.login.registration_token`, as Synapse checks it: the first success in a session takes
    /// a pending use of the token (so a token with uses left cannot be over-used by sessions in
    /// flight), recorded on the session; the same token again changes nothing, another one is
    /// refused. Answers the stage's failure (errcode, message), if any.
    async fn registration_token_stage(
        self,
        session: &str,
        done: &mut serde_json::Map<String, Value>,
        token: Option<&str>,
    ) -> Result<Option<(&'static str, &'static str)>> {
        const STAGE: &str = "m.login.registration_token";
        let Some(token) = token else {
            return Ok(Some(("M_MISSING_PARAM", "Missing registration token")));
        };
        match done.get(STAGE) {
            Some(held) if held.as_str() == Some(token) => return Ok(None),
            Some(_) => return Ok(Some(("M_INVALID_PARAM", "Registration token has changed"))),
            None => {}
        }
        let mut with = done.clone();
        with.insert(STAGE.into(), json!(token));
        let completed = Value::Object(with.clone()).to_string();
        if self
            .db
            .reserve_registration_token(session, &completed, token, util::now_ms())
            .await?
        {
            *done = with;
            Ok(None)
        } else {
            Ok(Some(("M_UNAUTHORIZED", "Invalid registration token")))
        }
    }

    /// `GET /register/m.login.registration_token/validity`: whether registration asks for a
    /// token and this one exists, has not expired and has uses left.
    pub async fn registration_token_valid(self, token: &str) -> Result<bool> {
        Ok(self.config.registration == RegistrationMode::Token
            && self
                .db
                .registration_token_usable(token, util::now_ms())
                .await?)
    }

    pub fn check_registration_open(self) -> Result<()> {
        if self.config.registration == RegistrationMode::Closed {
            return Err(Error::forbidden("Registration has been disabled"));
        }
        Ok(())
    }

    /// Creates an account. `login` false means inhibit_login. With a validated email session
    /// (Tchap), the localpart and display name come from the address (a number is appended on a
    /// clash), `localpart` is ignored, and the address is bound in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        self,
        localpart: Option<&str>,
        password: Option<&str>,
        admin: bool,
        device_id: Option<String>,
        device_name: Option<&str>,
        login: bool,
        refresh: bool,
        auth: &RegistrationAuth,
    ) -> Result<(OwnedUserId, Option<Session>)> {
        let not_validated = || Error::threepid_auth_failed("No validated email for this session");
        let address = match &auth.email {
            Some(creds) => Some(
                self.validated_email(Purpose::Registration, creds)
                    .await?
                    .ok_or_else(not_validated)?,
            ),
            None => None,
        };
        // (first localpart to try, whether to number it on a clash, display name)
        let (base, numbered, displayname) = match (&address, localpart) {
            (Some(a), _) => (email::localpart(a), true, Some(email::display_name(a))),
            (None, Some(l)) => (l.to_owned(), false, None),
            (None, None) => loop {
                let candidate = util::random_string(12).to_lowercase();
                if !self.db.user_exists(&candidate).await? {
                    break (candidate, false, None);
                }
            },
        };
        check_localpart(&base, self.server_name.as_str())?;
        if let Some(p) = password {
            self.policy().check_password_strength(p)?;
        }
        let hash = match password {
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let now = util::now_ms();
        let mut tx = self.db.begin_write().await?;
        let mut n = 0u32;
        let user_id = loop {
            let candidate = if n == 0 {
                base.clone()
            } else {
                format!("{base}{n}")
            };
            check_localpart(&candidate, self.server_name.as_str())?;
            let user_id = UserId::parse(format!("@{candidate}:{}", self.server_name))
                .map_err(|_| Error::invalid_username("Invalid user ID"))?;
            if Db::insert_user(
                &mut tx.tx,
                user_id.as_str(),
                &candidate,
                hash.as_deref(),
                admin,
                displayname.as_deref().unwrap_or(&candidate),
                now,
            )
            .await?
            {
                break user_id;
            }
            n += 1;
            if !numbered || n > 10_000 {
                return Err(Error::user_in_use("User ID already taken"));
            }
        };
        if let Some(t) = &auth.token {
            // The session's pending use becomes a completed one, once: a second registration
            // racing on the same session (or after the token was deleted) is refused.
            let session = auth.session.as_deref().unwrap_or_default();
            if !Db::complete_registration_token(&mut tx.tx, session, t).await? {
                return Err(Error::unauthorized("Invalid registration token"));
            }
        }
        if let (Some(address), Some(creds)) = (&address, &auth.email) {
            Db::take_threepid_session(
                &mut tx.tx,
                &creds.sid,
                &creds.client_secret,
                Purpose::Registration.as_str(),
                now,
            )
            .await?
            .ok_or_else(not_validated)?;
            if !Db::bind_threepid(&mut tx.tx, "email", address, user_id.as_str(), now, now).await? {
                return Err(Error::threepid_in_use("Email address is already in use"));
            }
        }
        self.policy()
            .validity_on_register(&mut tx.tx, &user_id, now)
            .await?;
        let session = if login {
            Some(
                self.open_session(&mut tx.tx, &user_id, device_id, device_name, refresh)
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        if let Some(s) = &auth.session {
            self.db.uia_delete(s).await?;
        }
        if let Some(a) = &address {
            self.policy().email_bound(&user_id, a).await;
        }
        self.policy().annuaire_touch(&user_id).await;
        Ok((user_id, session))
    }

    /// The localpart a registration asks for: the client's `username`, lower-cased; none with
    /// Tchap, where the localpart comes from the validated address.
    pub fn requested_localpart(self, username: Option<&str>) -> Option<String> {
        username
            .filter(|_| self.policy().client_chooses_localpart())
            .map(str::to_lowercase)
    }

    pub async fn username_available(self, localpart: &str) -> Result<()> {
        check_localpart(localpart, self.server_name.as_str())?;
        if self.db.user_exists(localpart).await? {
            return Err(Error::user_in_use("User ID already taken"));
        }
        Ok(())
    }

    // ---- login ----

    /// Resolves a login identifier to a user id: `m.id.user` (a user id or localpart; also the
    /// deprecated top-level `user`), or `m.id.thirdparty` / the deprecated top-level `medium` and
    /// `address` (the account the address is bound to). `None`: no account has that address —
    /// callers answer it like a wrong password.
    async fn resolve_identifier(self, auth: &AuthData) -> Result<Option<OwnedUserId>> {
        let (medium, address) = match &auth.identifier {
            Some(id) if id.kind == "m.id.thirdparty" => (id.medium.clone(), id.address.clone()),
            Some(_) => (None, None),
            None => (auth.medium.clone(), auth.address.clone()),
        };
        if auth
            .identifier
            .as_ref()
            .is_some_and(|i| i.kind == "m.id.thirdparty")
            || (auth.identifier.is_none() && auth.user.is_none() && address.is_some())
        {
            let medium = medium.ok_or_else(|| Error::missing_param("Missing medium"))?;
            let address = address.ok_or_else(|| Error::missing_param("Missing address"))?;
            if medium != "email" || address.len() > email::MAX_ADDRESS {
                return Ok(None);
            }
            let owner = self
                .db
                .threepid_owner("email", &email::normalise(&address))
                .await?;
            return Ok(owner.and_then(|o| UserId::parse(o).ok()));
        }
        let raw = match &auth.identifier {
            Some(id) if id.kind == "m.id.user" => id.user.clone(),
            Some(id) => {
                return Err(Error::bad_request(format!(
                    "Unsupported identifier type {}",
                    id.kind
                )))
            }
            None => auth.user.clone(),
        }
        .ok_or_else(|| Error::missing_param("Missing identifier"))?;
        let full = if raw.starts_with('@') {
            raw.to_lowercase()
        } else {
            format!("@{}:{}", raw.to_lowercase(), self.server_name)
        };
        UserId::parse(full)
            .map(Some)
            .map_err(|_| Error::forbidden("Invalid username or password"))
    }

    pub async fn login_password(
        self,
        auth: &AuthData,
        device_id: Option<String>,
        device_name: Option<&str>,
        refresh: bool,
    ) -> Result<Session> {
        let user_id = self.resolve_identifier(auth).await?;
        let password = auth
            .password
            .as_deref()
            .ok_or_else(|| Error::missing_param("Missing password"))?;
        // Failures count per account whatever the client's address; an identifier that names
        // no account counts under its own spelling (and costs the same).
        let account = match &user_id {
            Some(u) => u.to_string(),
            None => {
                let id = auth.identifier.as_ref();
                let addr = id
                    .and_then(|i| i.address.as_deref())
                    .or(auth.address.as_deref());
                format!("?{}", addr.unwrap_or_default().to_lowercase())
            }
        };
        let limit = self.config.rate_limits.login_failures;
        self.ratelimit.peek(LOGIN_FAILURES, &account, limit)?;
        let user = match &user_id {
            Some(u) if self.is_local(u) => self.db.get_user(u.as_str()).await?,
            _ => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        if !self.verify_password(hash, password).await {
            self.ratelimit.spend(LOGIN_FAILURES, &account, limit);
            return Err(Error::forbidden("Invalid username or password"));
        }
        let (Some(user), Some(user_id)) = (user, user_id) else {
            return Err(Error::forbidden("Invalid username or password"));
        };
        if user.deactivated == 1 {
            return Err(Error::user_deactivated("This account has been deactivated"));
        }
        if user.locked == 1 {
            return Err(locked());
        }
        let mut tx = self.db.begin_write().await?;
        let session = self
            .open_session(&mut tx.tx, &user_id, device_id, device_name, refresh)
            .await?;
        tx.commit().await?;
        // Logging in again on a known device replaces its tokens: the old ones must stop working.
        self.forget_device(&user_id, &session.device_id).await;
        Ok(session)
    }

    /// `/refresh`. The old refresh token stays valid until the new access or refresh token is
    /// first used (spec), so a lost response does not log the client out.
    pub async fn refresh(self, refresh_token: &str) -> Result<Session> {
        let used = util::hash_secret(refresh_token);
        let mut tx = self.db.begin_write().await?;
        let Some((user, device)) = Db::refresh_owner(&mut tx.tx, &used).await? else {
            return Err(Error::unknown_token("Unknown refresh token"));
        };
        // Using this refresh token retires whatever preceded it.
        Db::revoke_predecessors(&mut tx.tx, &user, &device, &used).await?;
        let user_id = UserId::parse(&user).map_err(|_| Error::unknown_token("Bad user"))?;
        let (access, refresh, lifetime) = self.new_tokens(true);
        let now = util::now_ms();
        Db::insert_tokens(
            &mut tx.tx,
            &user,
            &device,
            &util::hash_secret(&access),
            lifetime.map(|l| now + l),
            refresh.as_deref().map(util::hash_secret).as_deref(),
            now,
            true,
        )
        .await?;
        tx.commit().await?;
        self.forget_device(&user_id, &device).await;
        Ok(Session {
            user_id,
            device_id: device,
            access_token: access,
            refresh_token: refresh,
            expires_in_ms: lifetime,
        })
    }

    /// First use of an access token issued by `/refresh`: its predecessors are revoked.
    async fn complete_rotation(
        self,
        user: &UserId,
        device: &str,
        refresh_hash: &str,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        Db::revoke_predecessors(&mut tx.tx, user.as_str(), device, refresh_hash).await?;
        tx.commit().await?;
        self.forget_device(user, device).await;
        Ok(())
    }

    pub async fn devices(self, user: &UserId) -> Result<Vec<DeviceRow>> {
        Ok(self.db.list_devices(user.as_str()).await?)
    }

    pub async fn device(self, user: &UserId, device_id: &str) -> Result<DeviceRow> {
        self.db
            .get_device(user.as_str(), device_id)
            .await?
            .ok_or_else(|| Error::not_found("Device not found"))
    }

    pub async fn rename_device(
        self,
        user: &UserId,
        device_id: &str,
        name: Option<&str>,
    ) -> Result<()> {
        if name.is_some_and(|n| n.len() > 512) {
            return Err(Error::too_large("Device name too long"));
        }
        if !self
            .db
            .rename_device(user.as_str(), device_id, name)
            .await?
        {
            return Err(Error::not_found("Device not found"));
        }
        Ok(())
    }

    /// A user's profile as `requester` may see it (the Tchap rules: `policy/profiles`): local
    /// users from the database, remote users from their server
    /// (`/_matrix/federation/v1/query/profile`).
    pub async fn profile(self, requester: &UserId, user: &str) -> Result<Value> {
        if let Ok(id) = UserId::parse(user) {
            self.policy()
                .policy_may_read_profile(requester, &id)
                .await?;
            if !self.is_local(&id) {
                let request =
                    ruma::api::federation::query::get_profile_information::v1::Request::new(
                        id.clone(),
                    );
                let v = self.federation().call(id.server_name(), request).await?;
                let mut out = json!({});
                for f in ["displayname", "avatar_url"] {
                    if let Some(s) = v.get(f).and_then(Value::as_str) {
                        out[f] = json!(s);
                    }
                }
                // Extended fields as the remote gives them, within the spec's bounds.
                if let Some(o) = v.as_object() {
                    let mut size = 0;
                    for (k, val) in o {
                        if k == "displayname" || k == "avatar_url" {
                            continue;
                        }
                        size += k.len() + val.to_string().len();
                        if k.len() > profile_fields::MAX_KEY_BYTES
                            || size > profile_fields::MAX_PROFILE_BYTES
                        {
                            continue;
                        }
                        out[k] = val.clone();
                    }
                }
                return Ok(out);
            }
        }
        self.local_profile(user).await
    }

    /// A local user's public profile (displayname, avatar_url); deactivated users have none.
    pub async fn local_profile(self, user: &str) -> Result<Value> {
        let u = self
            .db
            .get_user(user)
            .await?
            .filter(|u| u.deactivated == 0)
            .ok_or_else(|| Error::not_found("Profile not found"))?;
        let mut v = json!({});
        if let Some(d) = u.displayname {
            v["displayname"] = json!(d);
        }
        if let Some(a) = u.avatar_url {
            v["avatar_url"] = json!(a);
        }
        for (k, val) in self.custom_fields(user).await? {
            v[k] = val;
        }
        Ok(v)
    }

    /// Deletes devices with their tokens and keys; users sharing a room are told.
    pub async fn delete_devices(self, user: &UserId, devices: &[String]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let hashes = self.db.token_hashes(user.as_str(), Some(devices)).await?;
        let ticket = self.e2ee().device_list_ticket().await?;
        let res = self
            .db
            .delete_devices(user.as_str(), devices, ticket.id, ticket.finish().as_ref())
            .await;
        self.forget_tokens(&hashes).await;
        res?;
        let id = ticket.id;
        ticket.publish(&[user]).await;
        self.federation()
            .federate_device_change(user, id, DeviceChange::Devices(devices))
            .await;
        Ok(())
    }

    /// Logs every device out (Synapse deletes the devices too).
    pub async fn logout_all(self, user: &UserId) -> Result<()> {
        let devices: Vec<String> = self
            .db
            .list_devices(user.as_str())
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        self.delete_devices(user, &devices).await?;
        // Tokens of devices created meanwhile, if any.
        let hashes = self.db.token_hashes(user.as_str(), None).await?;
        self.db.delete_all_tokens(user.as_str()).await?;
        self.forget_tokens(&hashes).await;
        Ok(())
    }

    /// User-interactive auth for sensitive actions of a logged-in user: the password stage.
    pub async fn uia_password(self, requester: &Requester, auth: Option<AuthData>) -> Result<()> {
        check_uia_session(auth.as_ref())?;
        let session = auth
            .as_ref()
            .and_then(|a| a.session.clone())
            .unwrap_or_else(|| util::random_string(24));
        let challenge = || {
            strip_errcode(
                Error::auth_required("")
                    .with_extra("flows", json!([{ "stages": ["m.login.password"] }]))
                    .with_extra("params", json!({}))
                    .with_extra("session", json!(session)),
            )
        };
        let Some(auth) = auth else {
            self.db
                .uia_put(
                    &session,
                    Some(requester.user_id.as_str()),
                    "",
                    util::now_ms(),
                )
                .await?;
            return Err(challenge());
        };
        if auth.kind.as_deref() != Some("m.login.password") {
            return Err(challenge());
        }
        let user_id = self.resolve_identifier(&auth).await?;
        if user_id.as_ref() != Some(&requester.user_id) {
            return Err(Error::forbidden("Can only authenticate as yourself"));
        }
        // The same failure budget as /login: a stolen access token does not open a way to
        // guess the password.
        let limit = self.config.rate_limits.login_failures;
        self.ratelimit
            .peek(LOGIN_FAILURES, requester.user_id.as_str(), limit)?;
        let user = self.db.get_user(requester.user_id.as_str()).await?;
        let ok = self
            .verify_password(
                user.and_then(|u| u.password_hash),
                auth.password.as_deref().unwrap_or_default(),
            )
            .await;
        if !ok {
            self.ratelimit
                .spend(LOGIN_FAILURES, requester.user_id.as_str(), limit);
            let mut e = challenge();
            e.extra
                .get_or_insert_with(Default::default)
                .insert("errcode".into(), json!("M_FORBIDDEN"));
            e.extra
                .get_or_insert_with(Default::default)
                .insert("error".into(), json!("Invalid password"));
            return Err(e);
        }
        if let Some(s) = auth.session {
            self.db.uia_delete(&s).await?;
        }
        Ok(())
    }

    pub async fn change_password(
        self,
        requester: &Requester,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<()> {
        self.policy().check_password_strength(new_password)?;
        let hash = self.hash_password(new_password).await?;
        self.db
            .set_password_hash(requester.user_id.as_str(), &hash)
            .await?;
        if logout_devices {
            let others: Vec<String> = self
                .db
                .list_devices(requester.user_id.as_str())
                .await?
                .into_iter()
                .map(|d| d.device_id)
                .filter(|d| *d != requester.device_id)
                .collect();
            self.delete_devices(&requester.user_id, &others).await?;
        }
        Ok(())
    }

    /// Deactivates the account: leaves every room, removes devices, tokens, password and bound
    /// addresses (which become free for a new account, as in Synapse).
    pub async fn deactivate(self, user: &UserId) -> Result<()> {
        let rooms = self.db.user_memberships(user.as_str()).await?;
        for m in rooms
            .iter()
            .filter(|m| m.membership == "join" || m.membership == "invite")
        {
            if let Ok(room_id) = ruma::RoomId::parse(&m.room_id) {
                if let Err(e) = self.rooms().leave_room(user, &room_id, None).await {
                    tracing::warn!(%room_id, error = %e, "could not leave room on deactivation");
                }
            }
        }
        self.logout_all(user).await?;
        let hashes = self.db.token_hashes(user.as_str(), None).await?;
        self.db.deactivate_user(user.as_str()).await?;
        self.forget_tokens(&hashes).await;
        self.db.unbind_all_threepids(user.as_str()).await?;
        self.policy().annuaire_touch(user).await;
        Ok(())
    }

    /// Creates a user from the command line (no UIA, no login).
    pub async fn create_user_cli(
        self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> Result<OwnedUserId> {
        let (user_id, _) = self
            .register(
                Some(localpart),
                Some(password),
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
}

/// A locked account's answer (401 `M_USER_LOCKED`, soft logout: the client keeps its session
/// for when the account is unlocked).
fn locked() -> Error {
    Error::user_locked("This account has been locked").soft_logout()
}

/// UIA answers are `{flows, params, session, completed}` without errcode unless a stage failed.
fn strip_errcode(mut e: Error) -> Error {
    e.errcode = "";
    e
}
