-- The audit time indexes in ascending order, as sqlite/0016. Events arrive in time
-- order: in an ascending B-tree an insert goes to the rightmost leaf, which Postgres
-- caches (no descent from the root) and splits 90/10; in a descending one it went to
-- the leftmost leaf, descending each time and splitting pages in half. Searches read
-- newest-first by scanning backwards (same plans). Rebuilding the indexes reads the
-- audit log once and holds back writes to it while it runs, at the first start after
-- the upgrade: on a large log, stop the other replicas for the upgrade.
DROP INDEX audit_events_occurred_at_idx;
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at, id);
DROP INDEX audit_events_type_idx;
CREATE INDEX audit_events_type_idx ON audit_events (event_type, occurred_at);
DROP INDEX audit_events_client_idx;
CREATE INDEX audit_events_client_idx ON audit_events (client_id, occurred_at) WHERE client_id IS NOT NULL;
DROP INDEX audit_events_external_idx;
CREATE INDEX audit_events_external_idx ON audit_events
    (((detail -> 'external') ->> 'subject'), occurred_at)
    WHERE ((detail -> 'external') ->> 'subject') IS NOT NULL;
