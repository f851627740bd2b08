-- Several nodes on one PostgreSQL (docs/high-availability.md). SQLite serves one process and
-- never reads these tables; they exist there too so both dialects keep the same schema.
-- The last position handed out on each stream, shared by every node.
CREATE TABLE stream_counters (
    stream TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);
-- Positions handed out whose write has not committed yet, with the node (its slot) that took
-- them: every node reads "persisted up to" as the lowest of these, minus one. A write deletes
-- its own rows in its transaction; a dead node's rows are deleted by the others.
CREATE TABLE stream_inflight (
    stream TEXT NOT NULL,
    pos BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    -- When it was taken: a position in flight far longer than any write is taken back
    -- (its write, if it still runs, then fails and is retried).
    taken_ts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, pos)
);
CREATE INDEX stream_inflight_slot ON stream_inflight (slot);
-- The slot of the node that runs an admin job: a job whose node is gone is adopted by another.
ALTER TABLE admin_jobs ADD COLUMN runner BIGINT NOT NULL DEFAULT 0;
-- Nonces of shared-secret registration (/_synapse/admin/v1/register): handed out by one node,
-- used (once) on any.
CREATE TABLE registration_nonces (
    nonce TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);
