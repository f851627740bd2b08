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

-- Outbound PDUs per destination, in order; a row goes when the destination accepted it.
CREATE TABLE federation_outbox (
    id BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL
);
CREATE INDEX federation_outbox_dest ON federation_outbox (destination, id);

-- Transactions already received (origin, txn id), for idempotent /send.
CREATE TABLE federation_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
