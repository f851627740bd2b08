-- Room directory, user directory and server-side search (SQLite).
-- Differs from migrations/postgres/0008_directory_search.sql on purpose: the full-text index is
-- an FTS5 table here and a tsvector column there (store/search.rs holds both dialects).

-- The published rooms are read on every /publicRooms.
CREATE INDEX rooms_public ON rooms (is_public);

-- One row per indexed event: rowid = events.stream_ordering, body = the searchable text
-- (m.room.message body, m.room.name name, m.room.topic topic), key = which of the three.
-- Written in the event's own transaction, deleted in the redaction's.
CREATE VIRTUAL TABLE event_search USING fts5(
    body,
    room_id UNINDEXED,
    key UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Events stored before this migration.
INSERT INTO event_search (rowid, body, room_id, key)
SELECT stream_ordering, json_extract(json, '$.content.body'), room_id, 'content.body' FROM events
WHERE type = 'm.room.message' AND state_key IS NULL AND redacted_by IS NULL
  AND json_type(json, '$.content.body') = 'text';
INSERT INTO event_search (rowid, body, room_id, key)
SELECT stream_ordering, json_extract(json, '$.content.name'), room_id, 'content.name' FROM events
WHERE type = 'm.room.name' AND state_key = '' AND redacted_by IS NULL
  AND json_type(json, '$.content.name') = 'text';
INSERT INTO event_search (rowid, body, room_id, key)
SELECT stream_ordering, json_extract(json, '$.content.topic'), room_id, 'content.topic' FROM events
WHERE type = 'm.room.topic' AND state_key = '' AND redacted_by IS NULL
  AND json_type(json, '$.content.topic') = 'text';
