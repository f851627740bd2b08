-- Other servers' signing keys, verified and cached. expired_ts is set for old keys (valid only
-- for what was signed before it).
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The last signed /_matrix/key/v2/server response of each server, served again by the notary
-- endpoint (with our signature added).
CREATE TABLE server_key_responses (
    server_name TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
