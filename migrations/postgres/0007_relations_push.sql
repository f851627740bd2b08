-- Relations (m.relates_to) of stored events, for /relations, /threads and bundled aggregations.
-- Redacted events lose their row (a redaction removes the relation).
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);

-- Push rule actions per (user, event) that asked to notify, written with the event.
-- thread_id is the thread root's id, or 'main'. is_read flips when a receipt covers the event.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    notify BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    actions TEXT NOT NULL,
    is_read BIGINT NOT NULL DEFAULT 0,
    ts BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id)
);
-- Unread rows only (a partial index): receipts and sync read these; read rows stay for
-- /notifications and pushers, which use the stream index.
CREATE INDEX event_push_actions_unread ON event_push_actions (user_id, room_id, stream_ordering) WHERE is_read = 0;
CREATE INDEX event_push_actions_stream ON event_push_actions (user_id, stream_ordering);

-- Pushers (spec: Push notifications). last_stream is how far delivery has gone, so a restart
-- resumes where it stopped.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    last_stream BIGINT NOT NULL,
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_user ON pushers (user_id);
