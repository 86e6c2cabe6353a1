-- Labels on users and clients: access policies may name `label:<name>` as a subject.
ALTER TABLE users ADD COLUMN labels jsonb NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN labels jsonb NOT NULL DEFAULT '[]';

-- A user's labels are not issuance data (they are read when an access request is
-- decided). The store writes every mutable column of a user in one UPDATE, so the
-- column list of 0009 alone would still fire on a label-only change: compare values,
-- row by row. Any change to a client still moves the revision (0002), labels too.
DROP TRIGGER users_revision ON users;
CREATE TRIGGER users_revision AFTER INSERT OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER users_update_revision AFTER UPDATE OF username, password_hash, enabled ON users
    FOR EACH ROW
    WHEN (OLD.username IS DISTINCT FROM NEW.username
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.enabled IS DISTINCT FROM NEW.enabled)
    EXECUTE FUNCTION bump_revision();
