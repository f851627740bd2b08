-- Extended profile fields (spec v1.16, MSC4133): every key other than displayname and
-- avatar_url (which stay on users), its value as JSON text.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
