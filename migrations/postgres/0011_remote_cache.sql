-- Copies of other servers' data kept here: media fetched over federation (the bytes are
-- content-addressed files like local uploads) and the device/cross-signing keys of remote users
-- answered by their servers to /keys/query.

-- A remote media fetched once; later downloads are served from the local file.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    filename TEXT,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    quarantined BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_sha256 ON remote_media (sha256);

-- Thumbnails asked of the origin server (when the original is not cached here), per served size.
CREATE TABLE remote_media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);

-- Remote users whose whole device list is cached (fetched_ts: when their server answered).
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    fetched_ts BIGINT NOT NULL
);

-- Their device keys as their server signed and sent them (display name in unsigned).
CREATE TABLE remote_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Their master and self-signing keys (key_type 'master' | 'self_signing').
CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
