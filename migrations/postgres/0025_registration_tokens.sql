-- Registration tokens in the database (issue 17), as Synapse keeps them: the admin API creates,
-- changes and deletes them; `registration_tokens` in the configuration only seeds this table at
-- start (a token absent here is inserted unlimited and without expiry, never overwritten).
-- `pending` counts the UIA sessions that passed m.login.registration_token and have not
-- registered yet; `completed` the registrations made with the token.
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    pending BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

-- The token a registration UIA session holds a pending use of: released when the session
-- expires, turned into a completed use (and the session deleted) when the account is created.
ALTER TABLE uia_sessions ADD COLUMN registration_token TEXT;

-- registration_token_uses (0001) is no longer written; the start-up seed reads it once per
-- configured token so the uses counted before this migration are kept.
