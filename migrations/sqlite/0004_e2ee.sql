-- End-to-end encryption: device and one-time keys, cross-signing, device-list changes,
-- to-device messages, server-side key backup, dehydrated devices.

-- The device's signed `device_keys` object as uploaded (its own signature included).
CREATE TABLE device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Each row is handed out once, by a claim that deletes it.
CREATE TABLE one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm; `used` once handed out.
CREATE TABLE fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- master / self_signing / user_signing keys.
CREATE TABLE cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Verified signatures uploaded through /keys/signatures/upload. The target is a device id or a
-- cross-signing public key of target_user_id.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device-list stream: user_id's devices or cross-signing keys changed at stream_id.
CREATE TABLE device_list_changes (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Pending to-device messages, deleted once the device has synced past them.
CREATE TABLE to_device (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);

-- Highest position ever handed out by streams whose rows get deleted (to-device), so a restart
-- never reuses a position a client already holds.
CREATE TABLE stream_heads (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE backup_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BIGINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- MSC3814: at most one dehydrated device per user.
CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data TEXT NOT NULL
);

-- Membership changes of a room since a position (device-list tracking in /sync).
CREATE INDEX memberships_room_stream ON memberships (room_id, stream_ordering);
