-- A revision counter bumped by every change to what decides issuance (audiences,
-- scopes, clients, secrets, grants), whoever makes it: replicas, the CLI, manual SQL.
-- Servers cache that data in memory and drop the cache when the revision moves.

CREATE TABLE revision (
    id    integer PRIMARY KEY CHECK (id = 1),
    value bigint NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE FUNCTION bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revision SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER audiences_revision AFTER INSERT OR UPDATE OR DELETE ON audiences
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER scopes_revision AFTER INSERT OR UPDATE OR DELETE ON scopes
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER clients_revision AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER client_secrets_revision AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER grants_revision AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER grant_scopes_revision AFTER INSERT OR UPDATE OR DELETE ON grant_scopes
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
