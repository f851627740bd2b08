-- Email addresses bound to local accounts (validated; stored lower-cased).
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_ts BIGINT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Pending email invitations (m.room.third_party_invite): made on this server (origin = this
-- server) or announced by the peer that made them when this server hosts the address.
CREATE TABLE email_invites (
    token TEXT NOT NULL,
    origin TEXT NOT NULL,
    room_id TEXT NOT NULL,
    address TEXT NOT NULL,
    sender TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    resolved_ts BIGINT,
    PRIMARY KEY (origin, token)
);
CREATE INDEX email_invites_address ON email_invites (address);
