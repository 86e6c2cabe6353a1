-- Mayfly initial schema (Postgres). Applied migrations are never edited: add a new one.

CREATE TABLE audiences (
    id          uuid PRIMARY KEY,
    uri         text NOT NULL CONSTRAINT audiences_uri_key UNIQUE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL
);

CREATE TABLE scopes (
    id          uuid PRIMARY KEY,
    audience_id uuid NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    CONSTRAINT scopes_audience_name_key UNIQUE (audience_id, name)
);

CREATE TABLE clients (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    enabled         boolean NOT NULL,
    default_ttl_secs bigint,
    max_ttl_secs    bigint,
    allowed_cidrs   jsonb NOT NULL DEFAULT '[]',
    require_dpop    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- SHA-256 digests only: secrets are 256-bit random values, so a fast hash is enough.
CREATE TABLE client_secrets (
    id          uuid PRIMARY KEY,
    client_id   uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    digest      bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz
);
CREATE INDEX client_secrets_client_id_idx ON client_secrets (client_id);

CREATE TABLE grants (
    id            uuid PRIMARY KEY,
    subject_kind  text NOT NULL CHECK (subject_kind IN ('client', 'user')),
    subject_id    uuid NOT NULL,
    audience_id   uuid NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    not_before    timestamptz,
    expires_at    timestamptz,
    allowed_cidrs jsonb NOT NULL DEFAULT '[]',
    max_ttl_secs  bigint,
    reason        text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX grants_subject_idx ON grants (subject_kind, subject_id, audience_id);

CREATE TABLE grant_scopes (
    grant_id uuid NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    scope_id uuid NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    PRIMARY KEY (grant_id, scope_id)
);

CREATE TABLE signing_keys (
    id              text PRIMARY KEY,            -- PASERK k4.pid
    state           text NOT NULL CHECK (state IN ('next', 'active', 'retired', 'gone')),
    public_key      bytea NOT NULL,
    private_key_enc bytea NOT NULL,              -- XChaCha20-Poly1305 under the master key
    created_at      timestamptz NOT NULL,
    activated_at    timestamptz,
    retired_at      timestamptz
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active_idx ON signing_keys (state) WHERE state = 'active';

CREATE TABLE audit_events (
    id          uuid PRIMARY KEY,                -- UUIDv7: time-ordered
    occurred_at timestamptz NOT NULL,
    event_type  text NOT NULL,
    outcome     text NOT NULL,
    actor       text,
    subject     text,
    client_id   text,
    jti         text,
    audience    text,
    scopes      text,
    source_ip   text,
    user_agent  text,
    request_id  text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_type_idx ON audit_events (event_type, occurred_at DESC);
