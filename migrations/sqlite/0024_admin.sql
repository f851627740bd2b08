-- The admin API (issue 17): account flags, room blocks, rate-limit overrides, user reports and
-- background admin jobs (sqlite; the same as the other folder but the user_reports id column).
ALTER TABLE users ADD COLUMN locked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN shadow_banned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN user_type TEXT;
CREATE INDEX users_created ON users (created_ts);

-- Rooms nobody on this server may join (or be invited to) any more.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

CREATE TABLE ratelimit_overrides (
    user_id TEXT PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count BIGINT NOT NULL
);

-- POST /users/{userId}/report.
CREATE TABLE user_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_ts BIGINT NOT NULL
);
CREATE INDEX user_reports_target ON user_reports (target_user_id, id);
CREATE INDEX user_reports_user ON user_reports (user_id, id);

-- Admin jobs (room deletion, history purge, user redaction): a row per job, its parameters and
-- progress, so a restart resumes what was scheduled or running.
CREATE TABLE admin_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX admin_jobs_target ON admin_jobs (kind, target, created_ts);
CREATE INDEX admin_jobs_status ON admin_jobs (status);
