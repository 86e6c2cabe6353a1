-- As on SQLite (see sqlite/0017): a refresh token no longer references its family with
-- a foreign key, and there is no index on family_id. A token whose family is gone is
-- refused all the same (every read and every rotation joins the family); the hourly
-- prune deletes such tokens in short slices. Both stores keep one rule for them.
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_family_id_fkey;
DROP INDEX refresh_tokens_family_id_idx;
