-- The media admin API (issue 17): who quarantined a media, media protected from quarantine,
-- and when each was last served (purges of old or unused media go by it).
ALTER TABLE media ADD COLUMN quarantined_by TEXT;
ALTER TABLE media ADD COLUMN safe_from_quarantine BIGINT NOT NULL DEFAULT 0;
ALTER TABLE media ADD COLUMN last_access_ts BIGINT;
CREATE INDEX media_created ON media (created_ts);
ALTER TABLE remote_media ADD COLUMN quarantined_by TEXT;
ALTER TABLE remote_media ADD COLUMN last_access_ts BIGINT;
CREATE INDEX remote_media_fetched ON remote_media (fetched_ts);
