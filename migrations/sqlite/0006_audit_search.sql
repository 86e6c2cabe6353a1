-- Indexes for audit search: each filter the API offers, newest first.
CREATE INDEX audit_events_client_idx ON audit_events (client_id, occurred_at DESC) WHERE client_id IS NOT NULL;
CREATE INDEX audit_events_subject_idx ON audit_events (subject, occurred_at DESC) WHERE subject IS NOT NULL;
CREATE INDEX audit_events_jti_idx ON audit_events (jti) WHERE jti IS NOT NULL;
CREATE INDEX audit_events_audience_idx ON audit_events (audience, occurred_at DESC) WHERE audience IS NOT NULL;
