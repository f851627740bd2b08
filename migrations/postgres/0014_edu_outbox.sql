-- Outbound EDUs that must arrive (to-device messages, device-list and signing-key updates), per
-- destination, sent with the PDUs of the same destination; a row goes when the destination
-- accepted the transaction. Ids come from the same counter as federation_outbox.
CREATE TABLE federation_edu_outbox (
    id BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX federation_edu_outbox_dest ON federation_edu_outbox (destination, id);

-- To-device EDUs already delivered here, by (origin, message_id): a repeated EDU (a retried
-- transaction under another txn id) is delivered once.
CREATE TABLE federation_received_edus (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_received_edus_ts ON federation_received_edus (received_ts);
