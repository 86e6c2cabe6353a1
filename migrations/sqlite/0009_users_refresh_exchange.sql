-- Password logins, refresh-token rotation and token exchange (RFC 8693).

-- The grant types a client may use (RFC 7591 `grant_types`). Existing clients keep
-- what they could do: client_credentials.
ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT '["client_credentials"]';

-- Delegation: the clients or users that may act for the grant's subject under it.
ALTER TABLE grants ADD COLUMN may_act TEXT NOT NULL DEFAULT '[]';

-- Lockout bookkeeping (failed_logins, locked_until) is not issuance data: only changes
-- to the other columns move the revision, so failed logins do not empty the caches.
DROP TRIGGER users_update_revision;
CREATE TRIGGER users_update_revision AFTER UPDATE OF username, password_hash, enabled ON users
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;

-- One family per login; each refresh rotates to a new token of the family. Tokens are
-- 256-bit random values, stored as SHA-256 digests.
CREATE TABLE refresh_families (
    id         BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    audience   TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX refresh_families_expires_at_idx ON refresh_families (expires_at);
CREATE INDEX refresh_families_user_id_idx ON refresh_families (user_id);
CREATE INDEX refresh_families_client_id_idx ON refresh_families (client_id);

CREATE TABLE refresh_tokens (
    digest     BLOB PRIMARY KEY,
    family_id  BLOB NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- Revocations of a whole refresh family. SQLite cannot change a CHECK: rebuild the
-- table, keeping every row and the AUTOINCREMENT high-water mark (seq is the feed
-- cursor and must never be reused).
CREATE TABLE revocations_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            BLOB NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('jti', 'subject', 'client', 'grant', 'key', 'family')),
    value         TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
INSERT INTO revocations_new (seq, id, kind, value, issued_before, expires_at, reason, created_by, created_at)
    SELECT seq, id, kind, value, issued_before, expires_at, reason, created_by, created_at FROM revocations;
DELETE FROM sqlite_sequence WHERE name = 'revocations_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'revocations_new', seq FROM sqlite_sequence WHERE name = 'revocations';
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
CREATE INDEX revocations_expires_at_idx ON revocations (expires_at);
