-- The federation admin API (issue 17). `destinations`: every server this one has sent to or is
-- retrying, with its retry state as the sender last wrote it (on a state change only: first
-- contact, failure, recovery; the last sent stream ordering at most every minute).
CREATE TABLE destinations (
    destination TEXT PRIMARY KEY,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval BIGINT NOT NULL DEFAULT 0,
    failure_ts BIGINT,
    last_successful_stream_ordering BIGINT
);

-- The rooms whose events were sent to a destination, with the stream ordering of the last one.
CREATE TABLE destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (destination, room_id)
);

-- Until when (ms) the user may replace its cross-signing keys without UIA (set on the master key
-- by POST /_synapse/admin/v1/users/{user_id}/_allow_cross_signing_replacement_without_uia).
ALTER TABLE cross_signing_keys ADD COLUMN updatable_without_uia_before_ms BIGINT;
