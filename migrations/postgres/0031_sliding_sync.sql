-- Simplified sliding sync (MSC4186): one row per connection (user, device, conn_id), with what
-- the server remembers of it (sticky parameters, what each room was last sent with) as JSON.
-- `gen` numbers each version of that state; a `pos` names the version it was given with. The
-- previous version is kept so a client that never received an answer can retry its `pos`.
CREATE TABLE sliding_sync_connections (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    state TEXT NOT NULL,
    prev_gen BIGINT NOT NULL,
    prev_state TEXT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id)
);
