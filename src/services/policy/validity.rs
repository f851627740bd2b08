//! Account validity (TCHAP.md §5): accounts expire `period_days` after registration or their
//! last renewal; reminders carry a single-use renewal link; a periodic job sends them, tells
//! the annuaire about expiries and deactivates accounts expired past the grace period.
//!
//! Everything the job needs is in the database (it survives restarts); when several processes
//! share one database only the holder of the `account_validity` lease runs it. The per-request
//! check ([`Services::account_expired`]) reads an in-memory cache of expiration times.

use crate::services::policy::PolicyFace;
use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};

use crate::{
    config::AccountValidityConfig,
    store::{validity::RenewOutcome, Db},
    util, Error, Result,
};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// How long a cached expiration is trusted (another process sharing the database may have
/// renewed the account meanwhile).
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Past this many cached users the cache starts over.
const CACHE_MAX: usize = 200_000;
/// The job's lease name.
const LEASE: &str = "account_validity";
/// Work done per job run at most (the rest waits for the next run).
const BATCH: i64 = 500;

/// Per-process state: the expiration cache and this process's lease holder id.
pub struct Validity {
    cache: Mutex<HashMap<OwnedUserId, (Option<i64>, Instant)>>,
    holder: String,
    /// One run of the job at a time in this process (the lease is per process).
    running: tokio::sync::Mutex<()>,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            holder: util::random_string(24),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl Validity {
    fn forget(&self, user: &UserId) {
        self.cache.lock().remove(user);
    }
}

/// What a renewal link did, for the HTML page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Renewed { expiration_ts: i64 },
    AlreadyRenewed { expiration_ts: i64 },
    Unknown,
}

/// What one run of the job did (tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    /// False when another process holds the lease (nothing was done).
    pub ran: bool,
    pub backfilled: u64,
    pub reminders: usize,
    pub expired: usize,
    pub deactivated: usize,
}

/// `YYYY-MM-DD HH:MM UTC` for a time in milliseconds.
pub fn format_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Where renewal links point (`GET ?token=`).
pub const RENEW_PATH: &str = "/_synapse/client/email_account_validity/renew";

impl<'a> PolicyFace<'a> {
    /// The `[tchap.account_validity]` section, when expiry is on.
    pub fn validity_config(self) -> Option<&'a AccountValidityConfig> {
        self.s
            .config
            .tchap
            .as_ref()
            .and_then(|t| t.account_validity.as_ref())
    }

    pub fn validity_on(self) -> Result<&'a AccountValidityConfig> {
        self.validity_config()
            .ok_or_else(|| Error::unrecognized("Account validity is not enabled on this server"))
    }

    fn period_ms(cfg: &AccountValidityConfig) -> i64 {
        i64::from(cfg.period_days) * DAY_MS
    }

    /// Body of the `account_expired` hook: expiry on, a local account, its expiration passed.
    pub(super) async fn validity_expired(self, user: &UserId) -> Result<bool> {
        if self.validity_config().is_none() || !self.is_local(user) {
            return Ok(false);
        }
        Ok(self
            .validity_expired_among(&[user.to_string()])
            .await?
            .contains(user.as_str()))
    }

    /// Body of the `accounts_expired` hook: which of these local users have expired, with one
    /// query for those not in the cache (the cache is filled with them).
    pub(super) async fn validity_expired_among(
        self,
        users: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        if self.validity_config().is_none() {
            return Ok(out);
        }
        let now = util::now_ms();
        let mut missing = vec![];
        {
            let cache = self.validity.cache.lock();
            for u in users {
                let Ok(user) = UserId::parse(u.as_str()) else {
                    continue;
                };
                if !self.is_local(&user) {
                    continue;
                }
                match cache.get(&user).filter(|(_, at)| at.elapsed() < CACHE_TTL) {
                    Some((e, _)) => {
                        if e.is_some_and(|e| e <= now) {
                            out.insert(u.clone());
                        }
                    }
                    None => missing.push(u.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let found: HashMap<String, i64> =
            self.db.expirations(&missing).await?.into_iter().collect();
        let mut cache = self.validity.cache.lock();
        if cache.len() + missing.len() > CACHE_MAX {
            cache.clear();
        }
        for u in missing {
            let e = found.get(&u).copied();
            if e.is_some_and(|e| e <= now) {
                out.insert(u.clone());
            }
            if let Ok(user) = UserId::parse(u) {
                cache.insert(user, (e, Instant::now()));
            }
        }
        Ok(out)
    }

    /// Drops a user's cached expiration (after a write elsewhere).
    pub(crate) fn validity_forget(self, user: &UserId) {
        self.validity.forget(user);
    }

    /// Called inside the registration transaction: the new account expires after a period.
    pub async fn validity_on_register(
        self,
        tx: &mut crate::store::Tx,
        user: &UserId,
        now: i64,
    ) -> Result<()> {
        if let Some(cfg) = self.validity_config() {
            Db::insert_validity(tx, user.as_str(), now + Self::period_ms(cfg)).await?;
            self.validity.forget(user);
        }
        Ok(())
    }

    /// The admin endpoint: sets a local account's expiration (default: now + period) and
    /// whether it gets renewal emails. Returns the expiration.
    pub async fn admin_set_validity(
        self,
        user: &UserId,
        expiration_ts: Option<i64>,
        enable_renewal_emails: Option<bool>,
    ) -> Result<i64> {
        let cfg = self.validity_on()?;
        if !self.is_local(user) {
            return Err(Error::invalid_param("Only local users can be renewed"));
        }
        match self.db.get_user(user.as_str()).await? {
            Some(u) if u.deactivated == 0 => {}
            Some(_) => return Err(Error::user_deactivated("This account has been deactivated")),
            None => return Err(Error::not_found("Unknown user")),
        }
        if expiration_ts.is_some_and(|e| e < 0) {
            return Err(Error::invalid_param("expiration_ts must not be negative"));
        }
        let expiration = expiration_ts.unwrap_or_else(|| util::now_ms() + Self::period_ms(cfg));
        self.db
            .set_validity(user.as_str(), expiration, enable_renewal_emails)
            .await?;
        self.validity.forget(user);
        self.annuaire_touch(user).await;
        Ok(expiration)
    }

    /// `send_mail`: a new renewal link to every email bound to the account (none bound: nothing
    /// is sent, as Synapse).
    pub async fn send_renewal_mail(self, user: &UserId) -> Result<()> {
        self.validity_on()?;
        self.mailer.require()?;
        let key = user.as_str();
        self.ratelimit.check(
            "renewal_mail",
            key,
            crate::config::RateLimit {
                per_second: 1.0 / 60.0,
                burst: 3.0,
            },
        )?;
        let row = self.db.validity(key).await?;
        let expiration = match row {
            Some(r) => r.expiration_ts,
            None => return Ok(()),
        };
        let addresses: Vec<String> = self
            .db
            .threepids_of_users("email", &[key.to_owned()])
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        self.mail_renewal_link(user, expiration, &addresses).await
    }

    /// Sends one new renewal link to `addresses` (skipped when there are none).
    async fn mail_renewal_link(
        self,
        user: &UserId,
        expiration_ts: i64,
        addresses: &[String],
    ) -> Result<()> {
        if addresses.is_empty() {
            return Ok(());
        }
        let token = util::random_string(32);
        let now = util::now_ms();
        self.db
            .insert_renewal_token(&util::hash_secret(&token), user.as_str(), now)
            .await?;
        let base = self.config.public_baseurl();
        let link = format!("{}{RENEW_PATH}?token={token}", base.trim_end_matches('/'));
        let app = &self.mailer.app_name;
        let when = if expiration_ts <= now {
            format!("expired on {}", format_date(expiration_ts))
        } else {
            format!("expires on {}", format_date(expiration_ts))
        };
        let subject = format!("Renew your {app} account");
        let body = format!(
            "Hello,\n\nYour {app} account {user} {when}.\nTo keep it, open this link:\n\n{link}\n\n\
             Without a renewal the account is deactivated some time after it expires.\n"
        );
        let mut sent = false;
        let mut last_err = None;
        for a in addresses {
            match self.mailer.send(a, &subject, body.clone()).await {
                Ok(()) => sent = true,
                Err(e) => last_err = Some(e),
            }
        }
        match (sent, last_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// A renewal link was opened.
    pub async fn renew_with_token(self, token: &str) -> Result<Renewal> {
        let cfg = self.validity_on()?;
        if token.is_empty() || token.len() > 128 {
            return Ok(Renewal::Unknown);
        }
        let now = util::now_ms();
        let outcome = self
            .db
            .use_renewal_token(&util::hash_secret(token), now, now + Self::period_ms(cfg))
            .await?;
        Ok(match outcome {
            RenewOutcome::Unknown => Renewal::Unknown,
            RenewOutcome::AlreadyUsed { expiration_ts, .. } => {
                Renewal::AlreadyRenewed { expiration_ts }
            }
            RenewOutcome::Renewed {
                user_id,
                expiration_ts,
            } => {
                if let Ok(user) = UserId::parse(&user_id) {
                    self.validity.forget(&user);
                    self.annuaire_touch(&user).await;
                }
                Renewal::Renewed { expiration_ts }
            }
        })
    }

    /// How long the job's lease lasts: two intervals and a minute (a crashed holder is
    /// replaced after that).
    fn lease_ttl_ms(cfg: &AccountValidityConfig) -> i64 {
        (cfg.job_interval_secs.min(u64::MAX / 4000) as i64) * 2000 + 60_000
    }

    /// One run of the job (nothing when expiry is off or another process holds the lease).
    pub async fn run_validity_job_once(self) -> Result<JobReport> {
        let Some(cfg) = self.validity_config() else {
            return Ok(JobReport::default());
        };
        let _running = self.validity.running.lock().await;
        let now = util::now_ms();
        // On a cluster the job is a singleton (taken over within a second when its holder
        // dies); alone, the lease keeps a second process (an operator's tool) off it.
        let mine = if self.cluster.shared() {
            self.cluster
                .holds(crate::services::cluster::Singleton::Validity)
        } else {
            self.db
                .take_lease(LEASE, &self.validity.holder, now, Self::lease_ttl_ms(cfg))
                .await?
        };
        if !mine {
            return Ok(JobReport::default());
        }
        let mut report = JobReport {
            ran: true,
            ..Default::default()
        };
        let period = Self::period_ms(cfg);
        // Accounts older than the setting.
        let system = self.rooms().server_notices_user_id();
        report.backfilled = self
            .db
            .validity_backfill(
                now + period,
                // Synapse's startup_job_max_delta default: a tenth of the period.
                period / 10,
                system.as_ref().map(|u| u.as_str()).unwrap_or(""),
            )
            .await?;
        report.reminders = self.send_due_reminders(cfg, now).await?;
        // Expired since the last run: out of the annuaire.
        let expired = self.db.take_newly_expired(now, BATCH * 10).await?;
        let expired_ids: Vec<_> = expired
            .iter()
            .filter_map(|u| UserId::parse(u).ok())
            .collect();
        for user in &expired_ids {
            self.validity.forget(user);
        }
        // One recomputation for the whole batch.
        let refs: Vec<&UserId> = expired_ids.iter().map(|u| &**u).collect();
        self.annuaire_touch_users(&refs).await;
        report.expired = expired.len();
        // Past the grace period: deactivated.
        let cutoff = now - i64::from(cfg.grace_days) * DAY_MS;
        for u in self.db.validity_past_grace(cutoff, BATCH).await? {
            let Ok(user) = UserId::parse(&u) else {
                continue;
            };
            if system.as_deref() == Some(&*user) {
                continue;
            }
            match self.accounts().deactivate(&user).await {
                Ok(()) => {
                    // (deactivate already took the user out of the annuaire)
                    self.db.delete_validity(&u).await?;
                    self.validity.forget(&user);
                    tracing::info!(user = %u, "account expired past its grace period: deactivated");
                    report.deactivated += 1;
                }
                Err(e) => tracing::warn!(user = %u, error = %e, "deactivating an expired account"),
            }
        }
        self.db
            .prune_renewal_tokens(now - period - i64::from(cfg.grace_days) * DAY_MS)
            .await?;
        Ok(report)
    }

    /// (a) of the job: each account whose next reminder offset has come gets one email (an
    /// offset skipped while the job was down is not sent on top of a smaller one).
    async fn send_due_reminders(self, cfg: &AccountValidityConfig, now: i64) -> Result<usize> {
        let mut offsets: Vec<i64> = cfg.reminder_days.iter().map(|d| i64::from(*d)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        if offsets.is_empty() {
            return Ok(0);
        }
        if !self.mailer.enabled() {
            return Ok(0);
        }
        let mut sent = 0;
        // Offset by offset, most urgent first: each pass only sees accounts due at that offset
        // and not yet reminded at it or below, in batches until none is left (a batch where
        // nothing could be recorded stops the pass: the relay is failing).
        for &d in &offsets {
            loop {
                let rows = self
                    .db
                    .validity_reminder_candidates(now, now + d * DAY_MS, d, BATCH)
                    .await?;
                let full = rows.len() as i64 >= BATCH;
                let (n, recorded) = self.send_reminders(&offsets, rows, now).await?;
                sent += n;
                if !full || recorded == 0 {
                    break;
                }
            }
        }
        Ok(sent)
    }

    /// Sends one reminder to each of `rows` (at the smallest offset it has reached); returns
    /// (accounts emailed, reminders recorded).
    async fn send_reminders(
        self,
        offsets: &[i64],
        rows: Vec<crate::store::validity::ValidityRow>,
        now: i64,
    ) -> Result<(usize, usize)> {
        let due: Vec<_> = rows
            .into_iter()
            .filter_map(|r| {
                let left = r.expiration_ts - now;
                let offset = *offsets.iter().find(|d| left <= **d * DAY_MS)?;
                r.reminder_days_sent
                    .is_none_or(|s| offset < s)
                    .then_some((r, offset))
            })
            .collect();
        let users: Vec<String> = due.iter().map(|(r, _)| r.user_id.clone()).collect();
        let mut emails: HashMap<String, Vec<String>> = HashMap::new();
        for (u, a) in self.db.threepids_of_users("email", &users).await? {
            emails.entry(u).or_default().push(a);
        }
        let (mut sent, mut recorded) = (0, 0);
        for (r, offset) in due {
            let Ok(user) = UserId::parse(&r.user_id) else {
                continue;
            };
            let addresses = emails.remove(&r.user_id).unwrap_or_default();
            match self
                .mail_renewal_link(&user, r.expiration_ts, &addresses)
                .await
            {
                Ok(()) => {
                    self.db
                        .mark_reminder_sent(&r.user_id, r.expiration_ts, offset)
                        .await?;
                    recorded += 1;
                    if !addresses.is_empty() {
                        sent += 1;
                    }
                }
                Err(e) => tracing::warn!(user = %r.user_id, error = %e, "renewal reminder"),
            }
        }
        Ok((sent, recorded))
    }

    /// Gives the job's lease back (graceful stop).
    pub async fn release_validity_lease(self) {
        if self.validity_config().is_some() {
            if let Err(e) = self.db.release_lease(LEASE, &self.validity.holder).await {
                tracing::warn!(error = %e, "releasing the account validity lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::format_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::format_date(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(
            super::format_date(1_735_689_599_000),
            "2024-12-31 23:59 UTC"
        );
    }
}
