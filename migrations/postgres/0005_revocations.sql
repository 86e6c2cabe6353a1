-- Revocations, in the order resource servers receive them (seq is the feed cursor).
-- Inserts are serialized (advisory lock), so seq order is commit order and a reader
-- that has seen seq N never later finds a committed row below N.

CREATE TABLE revocations (
    seq           bigserial PRIMARY KEY,
    id            uuid NOT NULL CONSTRAINT revocations_id_key UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('jti', 'subject', 'client', 'grant', 'key')),
    value         text NOT NULL,
    issued_before timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,   -- every token it can match has expired by then
    reason        text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX revocations_expires_at_idx ON revocations (expires_at);
