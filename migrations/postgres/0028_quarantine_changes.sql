-- Every change of a media's quarantine (GET /_synapse/admin/v1/media/quarantine_changes), in
-- order: admin quarantines and releases, and the copies of quarantined content quarantined with
-- them or on arrival. origin is NULL for this server's media.
CREATE TABLE media_quarantine_changes (
    stream_id BIGSERIAL PRIMARY KEY,
    origin TEXT,
    media_id TEXT NOT NULL,
    quarantined BIGINT NOT NULL,
    changed_ts BIGINT NOT NULL
);
