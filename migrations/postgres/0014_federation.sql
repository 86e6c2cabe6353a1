-- Workload identity federation (issue #20): issuers whose tokens Mayfly trusts, and the
-- identities (a client or a user) their tokens may speak for.

-- `settings` is the issuer's verifier configuration as JSON, written and read by the
-- server (mayfly-federation's TrustedIssuerConfig); the store keeps it opaque.
CREATE TABLE trusted_issuers (
    id          uuid PRIMARY KEY,
    issuer      text NOT NULL UNIQUE,
    description text NOT NULL,
    settings    jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The owner is exactly one of client_id / user_id, each a real foreign key so no
-- identity outlives its owner. The caller derives `exact_subject` (a subject rule) or
-- `conditions_key` (a canonical claim-condition set) from `rule`; the two UNIQUE
-- constraints make identical identities of one issuer impossible, even concurrently
-- (NULLs are distinct, so each constraint binds only its kind of rule). They also
-- index lookups by issuer.
CREATE TABLE federated_identities (
    id                uuid PRIMARY KEY,
    trusted_issuer_id uuid NOT NULL REFERENCES trusted_issuers (id),
    client_id         uuid REFERENCES clients (id),
    user_id           uuid REFERENCES users (id),
    rule              jsonb NOT NULL,
    exact_subject     text,
    conditions_key    text,
    created_at        timestamptz NOT NULL,
    CHECK ((client_id IS NULL) <> (user_id IS NULL)),
    CHECK ((exact_subject IS NULL) <> (conditions_key IS NULL)),
    UNIQUE (trusted_issuer_id, exact_subject),
    UNIQUE (trusted_issuer_id, conditions_key)
);
CREATE INDEX federated_identities_client_idx ON federated_identities (client_id);
CREATE INDEX federated_identities_user_idx ON federated_identities (user_id);

-- Both decide issuance: servers drop their caches when they change.
CREATE TRIGGER trusted_issuers_revision AFTER INSERT OR UPDATE OR DELETE ON trusted_issuers
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();
CREATE TRIGGER federated_identities_revision AFTER INSERT OR UPDATE OR DELETE ON federated_identities
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revision();

-- Audit search by external identity (the server writes `detail.external.issuer` and
-- `.subject` on federated issuance and its denials), indexed by subject: a subject
-- names few events, an issuer many (its searches walk the time index like the other
-- broad filters). Partial, so only events naming an external identity pay for it; a
-- search `= $1` implies the predicate.
CREATE INDEX audit_events_external_idx ON audit_events
    (((detail -> 'external') ->> 'subject'), occurred_at DESC)
    WHERE ((detail -> 'external') ->> 'subject') IS NOT NULL;
