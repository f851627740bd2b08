-- Reports, OpenID tokens and space-hierarchy pagination (SQLite). Keep in step with
-- migrations/postgres/0009_reports_openid.sql (only the id column of reports differs).

-- Content reports: event_id set for an event report, NULL for a report of the room itself.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    event_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    score BIGINT,
    received_ts BIGINT NOT NULL
);
CREATE INDEX reports_room ON reports (room_id, id);
CREATE INDEX reports_user ON reports (user_id, id);

-- OpenID tokens handed to third parties (SHA-256 hashes, never in clear), valid until expires_ts.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- Where a paginated /hierarchy walk stands: the rooms still to visit and those already seen
-- (JSON), bound to the user and the request's parameters. Short-lived.
CREATE TABLE hierarchy_pages (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    suggested_only BIGINT NOT NULL,
    max_depth BIGINT,
    walk TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX hierarchy_pages_expiry ON hierarchy_pages (expires_ts);
