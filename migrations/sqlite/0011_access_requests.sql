-- Just-in-time access: policies say who may request which scopes of an audience, for
-- how long and how requests are decided; requests move pending → approved | denied |
-- cancelled | expired, each move a conditional UPDATE (… WHERE state = 'pending'), so
-- of concurrent deciders exactly one wins. None of this is issuance data (the grants an
-- approval creates are), so no revision triggers.

CREATE TABLE access_policies (
    id                 BLOB PRIMARY KEY,
    name               TEXT NOT NULL,
    audience_id        BLOB NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    scopes             TEXT NOT NULL,
    subjects           TEXT NOT NULL,
    max_duration_secs  INTEGER NOT NULL CHECK (max_duration_secs > 0),
    decision           TEXT NOT NULL CHECK (decision IN ('auto', 'approval', 'deny')),
    approvals_required INTEGER NOT NULL DEFAULT 0 CHECK (approvals_required >= 0),
    break_glass        INTEGER NOT NULL DEFAULT 0,
    created_by         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX access_policies_audience_id_idx ON access_policies (audience_id);

CREATE TABLE access_requests (
    id                 BLOB PRIMARY KEY,
    subject_kind       TEXT NOT NULL CHECK (subject_kind IN ('client', 'user')),
    subject_id         BLOB NOT NULL,
    audience_id        BLOB NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    audience           TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    duration_secs      INTEGER NOT NULL CHECK (duration_secs > 0),
    reason             TEXT NOT NULL,
    break_glass        INTEGER NOT NULL DEFAULT 0,
    state              TEXT NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
    policy_id          BLOB REFERENCES access_policies (id) ON DELETE SET NULL,
    approvals_required INTEGER NOT NULL,
    grant_id           BLOB,
    needs_review       INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    pending_until      INTEGER NOT NULL,
    decided_at         INTEGER,
    decided_by         TEXT,
    decision_comment   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX access_requests_subject_idx ON access_requests (subject_kind, subject_id);
CREATE INDEX access_requests_pending_idx ON access_requests (pending_until) WHERE state = 'pending';

CREATE TABLE access_approvals (
    request_id BLOB NOT NULL REFERENCES access_requests (id) ON DELETE CASCADE,
    approver   TEXT NOT NULL,
    comment    TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
) STRICT;
