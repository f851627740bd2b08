-- Room directory, user directory and server-side search (PostgreSQL).
-- Differs from migrations/sqlite/0008_directory_search.sql on purpose: the full-text index is
-- a tsvector column ('simple' configuration) with a GIN index here, an FTS5 table there
-- (store/search.rs holds both dialects).

-- The published rooms are read on every /publicRooms.
CREATE INDEX rooms_public ON rooms (is_public);

-- One row per indexed event (m.room.message body, m.room.name name, m.room.topic topic).
-- Written in the event's own transaction, deleted in the redaction's.
CREATE TABLE event_search (
    stream_ordering BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

-- Events stored before this migration. Events holding an escaped NUL anywhere are skipped:
-- PostgreSQL text cannot carry it.
INSERT INTO event_search (stream_ordering, room_id, key, vector)
SELECT stream_ordering, room_id, 'content.body', to_tsvector('simple', json::json -> 'content' ->> 'body')
FROM events
WHERE type = 'm.room.message' AND state_key IS NULL AND redacted_by IS NULL
  AND strpos(json, '\u0000') = 0 AND json_typeof(json::json -> 'content' -> 'body') = 'string';
INSERT INTO event_search (stream_ordering, room_id, key, vector)
SELECT stream_ordering, room_id, 'content.name', to_tsvector('simple', json::json -> 'content' ->> 'name')
FROM events
WHERE type = 'm.room.name' AND state_key = '' AND redacted_by IS NULL
  AND strpos(json, '\u0000') = 0 AND json_typeof(json::json -> 'content' -> 'name') = 'string';
INSERT INTO event_search (stream_ordering, room_id, key, vector)
SELECT stream_ordering, room_id, 'content.topic', to_tsvector('simple', json::json -> 'content' ->> 'topic')
FROM events
WHERE type = 'm.room.topic' AND state_key = '' AND redacted_by IS NULL
  AND strpos(json, '\u0000') = 0 AND json_typeof(json::json -> 'content' -> 'topic') = 'string';
