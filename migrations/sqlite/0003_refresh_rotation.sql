-- Refresh rotation (spec): an access token issued by /refresh remembers its refresh token and
-- whether its predecessors are still to be revoked on its first use.
ALTER TABLE access_tokens ADD COLUMN refresh_hash TEXT;
ALTER TABLE access_tokens ADD COLUMN pending_rotation BIGINT NOT NULL DEFAULT 0
