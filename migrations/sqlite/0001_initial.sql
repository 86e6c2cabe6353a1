-- Mayfly initial schema (SQLite). Same tables as Postgres; times are INTEGER
-- microseconds since the Unix epoch (UTC), ids are 16-byte UUID blobs, JSON is TEXT.
-- Applied migrations are never edited: add a new one.

CREATE TABLE audiences (
    id          BLOB PRIMARY KEY,
    uri         TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE scopes (
    id          BLOB PRIMARY KEY,
    audience_id BLOB NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    UNIQUE (audience_id, name)
) STRICT;

CREATE TABLE clients (
    id               BLOB PRIMARY KEY,
    name             TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    default_ttl_secs INTEGER,
    max_ttl_secs     INTEGER,
    allowed_cidrs    TEXT NOT NULL DEFAULT '[]',
    require_dpop     INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE client_secrets (
    id         BLOB PRIMARY KEY,
    client_id  BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    digest     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;
CREATE INDEX client_secrets_client_id_idx ON client_secrets (client_id);

CREATE TABLE grants (
    id            BLOB PRIMARY KEY,
    subject_kind  TEXT NOT NULL CHECK (subject_kind IN ('client', 'user')),
    subject_id    BLOB NOT NULL,
    audience_id   BLOB NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    not_before    INTEGER,
    expires_at    INTEGER,
    allowed_cidrs TEXT NOT NULL DEFAULT '[]',
    max_ttl_secs  INTEGER,
    reason        TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX grants_subject_idx ON grants (subject_kind, subject_id, audience_id);

CREATE TABLE grant_scopes (
    grant_id BLOB NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    scope_id BLOB NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    PRIMARY KEY (grant_id, scope_id)
) STRICT;

CREATE TABLE signing_keys (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired', 'gone')),
    public_key      BLOB NOT NULL,
    private_key_enc BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    activated_at    INTEGER,
    retired_at      INTEGER
) STRICT;
CREATE UNIQUE INDEX signing_keys_one_active_idx ON signing_keys (state) WHERE state = 'active';

CREATE TABLE audit_events (
    id          BLOB PRIMARY KEY,
    occurred_at INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor       TEXT,
    subject     TEXT,
    client_id   TEXT,
    jti         TEXT,
    audience    TEXT,
    scopes      TEXT,
    source_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_type_idx ON audit_events (event_type, occurred_at DESC);
