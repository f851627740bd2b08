-- Account validity (TCHAP.md §5): one row per local account once expiry is on (written at
-- registration, or by the job for accounts older than the setting).
CREATE TABLE account_validity (
    user_id TEXT PRIMARY KEY,
    expiration_ts BIGINT NOT NULL,
    -- The smallest reminder offset (days before expiry) already emailed for the current
    -- expiration; NULL: none yet. A renewal or an admin change resets it.
    reminder_days_sent BIGINT,
    -- When the last renewal email was sent (reminder or send_mail).
    email_sent_ts BIGINT,
    enable_renewal_emails BIGINT NOT NULL DEFAULT 1,
    -- 1 once the job has told the annuaire about this expiration.
    expiry_noticed BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX account_validity_expiration ON account_validity (expiration_ts);

-- Renewal links: the SHA-256 of the random token; single use (using one marks every pending
-- token of the user used, so older links answer "already renewed").
CREATE TABLE account_renewal_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    used_ts BIGINT
);
CREATE INDEX account_renewal_tokens_user ON account_renewal_tokens (user_id);
CREATE INDEX account_renewal_tokens_created ON account_renewal_tokens (created_ts);

-- Leases for background jobs when several processes share one database: a process runs a job
-- only while it holds the job's row (taken when free, expired, or already its own).
CREATE TABLE background_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- Server notices: each local user's notices room (created by the system user on first use).
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
