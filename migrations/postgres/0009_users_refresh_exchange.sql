-- Password logins, refresh-token rotation and token exchange (RFC 8693).

-- The grant types a client may use (RFC 7591 `grant_types`). Existing clients keep
-- what they could do: client_credentials.
ALTER TABLE clients ADD COLUMN grant_types jsonb NOT NULL DEFAULT '["client_credentials"]';

-- Delegation: the clients or users that may act for the grant's subject under it.
ALTER TABLE grants ADD COLUMN may_act jsonb NOT NULL DEFAULT '[]';

-- Lockout bookkeeping (failed_logins, locked_until) is not issuance data: only changes
-- to the other columns move the revision, so failed logins do not empty the caches.
DROP TRIGGER users_revision ON users;
CREATE TRIGGER users_revision AFTER INSERT OR DELETE OR UPDATE OF username, password_hash, enabled ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();

-- One family per login; each refresh rotates to a new token of the family. Tokens are
-- 256-bit random values, stored as SHA-256 digests.
CREATE TABLE refresh_families (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    audience   text NOT NULL,
    scope      text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,    -- absolute end of the family
    revoked_at timestamptz
);
CREATE INDEX refresh_families_expires_at_idx ON refresh_families (expires_at);
CREATE INDEX refresh_families_user_id_idx ON refresh_families (user_id);
CREATE INDEX refresh_families_client_id_idx ON refresh_families (client_id);

CREATE TABLE refresh_tokens (
    digest     bytea PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,    -- idle timeout
    used_at    timestamptz             -- set on rotation; a second use is reuse
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- Revocations of a whole refresh family (its access tokens carry `fam`).
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('jti', 'subject', 'client', 'grant', 'key', 'family'));
