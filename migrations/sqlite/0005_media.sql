-- Media repository. Files live on disk under <data_dir>/media, named by their SHA-256, so
-- identical uploads are stored once; rows here carry ownership and metadata.

CREATE TABLE media (
    media_id TEXT PRIMARY KEY,
    uploader TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    content_type TEXT,
    filename TEXT,
    -- NULL until the content arrives (asynchronous upload).
    size BIGINT,
    sha256 TEXT,
    -- Asynchronous uploads not completed by then are void.
    expires_ts BIGINT,
    quarantined BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX media_uploader ON media (uploader, created_ts);
CREATE INDEX media_sha256 ON media (sha256);

CREATE TABLE media_thumbnails (
    sha256 TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    thumb_sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (sha256, width, height, method)
);
