-- A revision counter bumped by every change to what decides issuance (audiences,
-- scopes, clients, secrets, grants), whoever makes it: the server, the CLI, manual SQL.
-- Servers cache that data in memory and drop the cache when the revision moves.

CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TRIGGER audiences_insert_revision AFTER INSERT ON audiences
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER audiences_update_revision AFTER UPDATE ON audiences
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER audiences_delete_revision AFTER DELETE ON audiences
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER scopes_insert_revision AFTER INSERT ON scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER scopes_update_revision AFTER UPDATE ON scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER scopes_delete_revision AFTER DELETE ON scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER clients_insert_revision AFTER INSERT ON clients
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER clients_update_revision AFTER UPDATE ON clients
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER clients_delete_revision AFTER DELETE ON clients
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_secrets_insert_revision AFTER INSERT ON client_secrets
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_secrets_update_revision AFTER UPDATE ON client_secrets
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_secrets_delete_revision AFTER DELETE ON client_secrets
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grants_insert_revision AFTER INSERT ON grants
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grants_update_revision AFTER UPDATE ON grants
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grants_delete_revision AFTER DELETE ON grants
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grant_scopes_insert_revision AFTER INSERT ON grant_scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grant_scopes_update_revision AFTER UPDATE ON grant_scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER grant_scopes_delete_revision AFTER DELETE ON grant_scopes
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
