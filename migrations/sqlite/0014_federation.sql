-- Workload identity federation (issue #20): issuers whose tokens Mayfly trusts, and the
-- identities (a client or a user) their tokens may speak for. Same shape as
-- postgres/0014; see there.

CREATE TABLE trusted_issuers (
    id          BLOB PRIMARY KEY,
    issuer      TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    settings    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE federated_identities (
    id                BLOB PRIMARY KEY,
    trusted_issuer_id BLOB NOT NULL REFERENCES trusted_issuers (id),
    client_id         BLOB REFERENCES clients (id),
    user_id           BLOB REFERENCES users (id),
    rule              TEXT NOT NULL,
    exact_subject     TEXT,
    conditions_key    TEXT,
    created_at        INTEGER NOT NULL,
    CHECK ((client_id IS NULL) <> (user_id IS NULL)),
    CHECK ((exact_subject IS NULL) <> (conditions_key IS NULL)),
    UNIQUE (trusted_issuer_id, exact_subject),
    UNIQUE (trusted_issuer_id, conditions_key)
) STRICT;
CREATE INDEX federated_identities_client_idx ON federated_identities (client_id);
CREATE INDEX federated_identities_user_idx ON federated_identities (user_id);

CREATE TRIGGER trusted_issuers_insert_revision AFTER INSERT ON trusted_issuers
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER trusted_issuers_update_revision AFTER UPDATE ON trusted_issuers
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER trusted_issuers_delete_revision AFTER DELETE ON trusted_issuers
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER federated_identities_insert_revision AFTER INSERT ON federated_identities
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER federated_identities_update_revision AFTER UPDATE ON federated_identities
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER federated_identities_delete_revision AFTER DELETE ON federated_identities
BEGIN UPDATE revision SET value = value + 1 WHERE id = 1; END;

-- No audit index for the external identity here: every issuance writes an audit event
-- and SQLite has one writer, so its audit search scans (as sqlite/0007 chose).
