-- A user's signatures of other users' keys, as a device-list change only he sees (Synapse's
-- user_signature_stream): his own devices re-read the targets' keys and see them verified,
-- while the signature stays private to him.
CREATE TABLE signature_changes (
    stream_id BIGINT NOT NULL,
    signer TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (signer, stream_id, target)
);
