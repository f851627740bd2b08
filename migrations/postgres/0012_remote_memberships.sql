-- Invites and knocks of local users in rooms this server may not know (spec: Inviting to a
-- room, Knocking): the membership event is stored in `events` as an outlier and in
-- `memberships`; this table keeps what clients see of the room meanwhile (the stripped state
-- sent with the invite, or answered to the knock) and the servers that can help join, reject
-- or rescind. One row per membership event.
CREATE TABLE remote_memberships (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- JSON array of stripped state events ({type, state_key, sender, content})
    stripped_state TEXT NOT NULL,
    -- JSON array of server names, most useful first
    servers TEXT NOT NULL,
    -- the room version (needed to build and check events before the room is known)
    room_version TEXT NOT NULL
);
CREATE INDEX remote_memberships_user_room ON remote_memberships (user_id, room_id);
