-- Signing-key lifecycle: next -> active -> retired -> gone (see the Postgres migration).
-- Times are INTEGER microseconds since the Unix epoch (UTC). SQLite cannot add a NOT NULL
-- column without a default, and no default is safe for published_at (an early one would
-- let a key activate at once), so it stays nullable; the store always writes it and
-- reads created_at in its place when it is missing.
-- Applied migrations are never edited: add a new one.

ALTER TABLE signing_keys ADD COLUMN published_at INTEGER;
ALTER TABLE signing_keys ADD COLUMN rotate_requested_at INTEGER;
ALTER TABLE signing_keys ADD COLUMN removes_at INTEGER;
ALTER TABLE signing_keys ADD COLUMN removed_at INTEGER;
ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER;

UPDATE signing_keys SET published_at = created_at;

CREATE UNIQUE INDEX signing_keys_one_next_idx ON signing_keys (state) WHERE state = 'next';
