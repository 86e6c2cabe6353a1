-- Labels on users and clients: access policies may name `label:<name>` as a subject.
ALTER TABLE users ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';

-- A user's labels are not issuance data (they are read when an access request is
-- decided). The store writes every mutable column of a user in one UPDATE, so the
-- column list of 0009 alone would still fire on a label-only change: compare values.
-- Any change to a client still moves the revision (0002), labels too.
DROP TRIGGER users_update_revision;
CREATE TRIGGER users_update_revision AFTER UPDATE OF username, password_hash, enabled ON users
    WHEN OLD.username IS NOT NEW.username
      OR OLD.password_hash IS NOT NEW.password_hash
      OR OLD.enabled IS NOT NEW.enabled
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
