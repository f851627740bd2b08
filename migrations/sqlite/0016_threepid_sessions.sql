-- Email validation sessions (requestToken → link or code → use). Tokens and codes are stored
-- hashed; a session without token and code (an address already in use) can never validate.
CREATE TABLE threepid_sessions (
    sid TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    purpose TEXT NOT NULL,
    send_attempt BIGINT NOT NULL,
    token_hash TEXT,
    code_hash TEXT,
    next_link TEXT,
    failures BIGINT NOT NULL,
    validated_ts BIGINT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE UNIQUE INDEX threepid_sessions_secret
    ON threepid_sessions (client_secret, medium, address, purpose);
CREATE INDEX threepid_sessions_expires ON threepid_sessions (expires_ts);
