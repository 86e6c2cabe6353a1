-- Just-in-time access: policies say who may request which scopes of an audience, for
-- how long and how requests are decided; requests move pending → approved | denied |
-- cancelled | expired, each move a conditional UPDATE (… WHERE state = 'pending'), so
-- of concurrent deciders exactly one wins. None of this is issuance data (the grants an
-- approval creates are), so no revision triggers.

CREATE TABLE access_policies (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    audience_id        uuid NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    scopes             jsonb NOT NULL,          -- scope names on the audience
    subjects           jsonb NOT NULL,          -- "user:<id>", "client:<id>", "users", "clients"
    max_duration_secs  bigint NOT NULL CHECK (max_duration_secs > 0),
    decision           text NOT NULL CHECK (decision IN ('auto', 'approval', 'deny')),
    approvals_required bigint NOT NULL DEFAULT 0 CHECK (approvals_required >= 0),
    break_glass        boolean NOT NULL DEFAULT false,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX access_policies_audience_id_idx ON access_policies (audience_id);

CREATE TABLE access_requests (
    id                 uuid PRIMARY KEY,
    subject_kind       text NOT NULL CHECK (subject_kind IN ('client', 'user')),
    subject_id         uuid NOT NULL,
    audience_id        uuid NOT NULL REFERENCES audiences (id) ON DELETE CASCADE,
    audience           text NOT NULL,
    scopes             jsonb NOT NULL,
    duration_secs      bigint NOT NULL CHECK (duration_secs > 0),
    reason             text NOT NULL,
    break_glass        boolean NOT NULL DEFAULT false,
    state              text NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
    policy_id          uuid REFERENCES access_policies (id) ON DELETE SET NULL,
    approvals_required bigint NOT NULL,
    grant_id           uuid,                    -- no FK: the grant may end (be deleted) first
    needs_review       boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    pending_until      timestamptz NOT NULL,
    decided_at         timestamptz,
    decided_by         text,
    decision_comment   text NOT NULL DEFAULT ''
);
CREATE INDEX access_requests_subject_idx ON access_requests (subject_kind, subject_id);
CREATE INDEX access_requests_pending_idx ON access_requests (pending_until) WHERE state = 'pending';

-- One row per approver and request: distinct approvers by construction.
CREATE TABLE access_approvals (
    request_id uuid NOT NULL REFERENCES access_requests (id) ON DELETE CASCADE,
    approver   text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    CONSTRAINT access_approvals_pkey PRIMARY KEY (request_id, approver)
);
