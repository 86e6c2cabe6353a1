-- A refresh token no longer references its family with a foreign key, and there is no
-- index on family_id. The index existed only for the ON DELETE CASCADE; every rotation
-- added an entry to it on a different page per family, and SQLite's WAL writes a whole
-- page for each (about 15 of a batch's 35 pages, and 15 % of a refresh's CPU). A token
-- whose family is gone is refused all the same (every read and every rotation joins
-- the family); the hourly prune deletes such tokens in short slices.
-- SQLite cannot drop a foreign key: rebuild the table, keeping every row.
CREATE TABLE refresh_tokens_new (
    selector   BLOB PRIMARY KEY,
    digest     BLOB NOT NULL,
    family_id  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
INSERT INTO refresh_tokens_new (selector, digest, family_id, created_at, expires_at, used_at)
    SELECT selector, digest, family_id, created_at, expires_at, used_at FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
