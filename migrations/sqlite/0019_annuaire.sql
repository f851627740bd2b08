-- The annuaire (TCHAP.md §6): one row per user of the federation known here. Local rows carry
-- a change position (monotonic, unique; a re-touched user moves to a new position) that peers
-- pull from; replicated rows have none.
CREATE TABLE annuaire_entries (
    user_id TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    display_name TEXT,
    avatar_url TEXT,
    -- JSON array of bound addresses (normalised)
    emails TEXT NOT NULL,
    external BIGINT NOT NULL,
    visible BIGINT NOT NULL,
    position BIGINT,
    updated_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX annuaire_entries_position ON annuaire_entries (position);

-- Which account an address belongs to, for every entry (local and replicated).
CREATE TABLE annuaire_emails (
    address TEXT PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE INDEX annuaire_emails_user ON annuaire_emails (user_id);

-- How far each peer's change stream has been pulled.
CREATE TABLE annuaire_peers (
    server TEXT PRIMARY KEY,
    since BIGINT NOT NULL
);
