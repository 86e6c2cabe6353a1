-- People, and public keys clients authenticate with (private_key_jwt, RFC 7523).

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL CONSTRAINT users_username_key UNIQUE,
    password_hash text NOT NULL,                 -- argon2id PHC string
    enabled       boolean NOT NULL,
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE client_public_keys (
    id         uuid PRIMARY KEY,
    client_id  uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kid        text NOT NULL,                    -- RFC 7638 thumbprint unless given
    public_key bytea NOT NULL,                   -- raw Ed25519, 32 bytes
    created_at timestamptz NOT NULL,
    CONSTRAINT client_public_keys_kid_key UNIQUE (client_id, kid)
);

CREATE TRIGGER users_revision AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER client_public_keys_revision AFTER INSERT OR UPDATE OR DELETE ON client_public_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
