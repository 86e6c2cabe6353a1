-- Anomaly detection: what each client has been seen doing, and what to do on surprise.

-- 'alert' records the anomaly (and calls the webhook); 'revoke' also revokes at once.
ALTER TABLE clients ADD COLUMN anomaly_policy TEXT NOT NULL DEFAULT 'alert'
    CHECK (anomaly_policy IN ('alert', 'revoke'));

-- One row per (client, kind, value) ever seen: kind 'network' (a /24 or /64),
-- 'audience', or 'endpoint' ("audience METHOD /path"). First sighting wins.
CREATE TABLE client_sightings (
    client_id  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('network', 'audience', 'endpoint')),
    value      TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (client_id, kind, value)
) STRICT, WITHOUT ROWID;
