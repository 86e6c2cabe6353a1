-- People, and public keys clients authenticate with (private_key_jwt, RFC 7523).

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE client_public_keys (
    id         BLOB PRIMARY KEY,
    client_id  BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kid        TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (client_id, kid)
) STRICT;

CREATE TRIGGER users_insert_revision AFTER INSERT ON users
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_update_revision AFTER UPDATE ON users
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_revision AFTER DELETE ON users
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_public_keys_insert_revision AFTER INSERT ON client_public_keys
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_public_keys_update_revision AFTER UPDATE ON client_public_keys
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER client_public_keys_delete_revision AFTER DELETE ON client_public_keys
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
