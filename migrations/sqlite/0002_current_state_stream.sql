-- Incremental sync reads the state entries of a room that changed after a position.
CREATE INDEX current_state_room_stream ON current_state (room_id, stream_ordering);
