-- Refresh tokens are found by a selector, then checked against their digest. A token
-- minted from now on carries its selector (a UUIDv7, so new rows go to the end of the
-- index instead of a random page); a token minted before has the first 16 bytes of its
-- digest as selector, which is what the server derives for a token of the old form.
-- SQLite cannot change a primary key: rebuild the table, keeping every row.
CREATE TABLE refresh_tokens_new (
    selector   BLOB PRIMARY KEY,
    digest     BLOB NOT NULL,
    family_id  BLOB NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
INSERT INTO refresh_tokens_new (selector, digest, family_id, created_at, expires_at, used_at)
    SELECT substr(digest, 1, 16), digest, family_id, created_at, expires_at, used_at
    FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
