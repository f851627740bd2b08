-- /timestamp_to_event (federation and client): the event of a room closest to a time.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);

-- Backfill over federation, per room: the earliest timeline event a backfill was last asked
-- for (a gap is asked about once), and whether the room's create event has been reached (no
-- more history to fetch).
CREATE TABLE room_backfill (
    room_id TEXT PRIMARY KEY,
    asked_event_id TEXT,
    reached_start BIGINT NOT NULL DEFAULT 0
);
