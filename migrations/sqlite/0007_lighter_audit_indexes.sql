-- 0006's extra audit indexes halved issuance throughput on SQLite (every issuance
-- writes an audit event, and SQLite has one writer). The embedded store keeps only
-- the time and type indexes; searches by other filters walk the time index.
DROP INDEX audit_events_client_idx;
DROP INDEX audit_events_subject_idx;
DROP INDEX audit_events_jti_idx;
DROP INDEX audit_events_audience_idx;
