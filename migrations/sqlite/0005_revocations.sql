-- Revocations, in the order resource servers receive them (seq is the feed cursor;
-- AUTOINCREMENT never reuses a value).

CREATE TABLE revocations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            BLOB NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('jti', 'subject', 'client', 'grant', 'key')),
    value         TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX revocations_expires_at_idx ON revocations (expires_at);
