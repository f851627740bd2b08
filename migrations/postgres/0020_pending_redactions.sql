-- Redactions received before their target (spec: a redaction applies only when its sender has
-- the redact power or is on the target sender's server, so it is judged when the target comes).
CREATE TABLE pending_redactions (
    room_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    redaction_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    may_redact_any BIGINT NOT NULL,
    PRIMARY KEY (target_id, redaction_id)
);
