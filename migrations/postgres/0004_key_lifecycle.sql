-- Signing-key lifecycle: next -> active -> retired -> gone, driven by a background task
-- on every replica. The timestamps let each step check its rule inside one locked
-- transaction (a key activates only once it has been published for the lead time).
-- Applied migrations are never edited: add a new one.

ALTER TABLE signing_keys
    ADD COLUMN published_at        timestamptz,  -- entered the key set
    ADD COLUMN rotate_requested_at timestamptz,  -- an operator asked to replace this active key
    ADD COLUMN removes_at          timestamptz,  -- retired: leaves the key set from then on
    ADD COLUMN removed_at          timestamptz,  -- gone: left the key set
    ADD COLUMN revoked_at          timestamptz;  -- gone at once by emergency rotation

-- Keys so far were published (and activated) when created.
UPDATE signing_keys SET published_at = created_at;
ALTER TABLE signing_keys ALTER COLUMN published_at SET NOT NULL;

-- At most one key waits to sign.
CREATE UNIQUE INDEX signing_keys_one_next_idx ON signing_keys (state) WHERE state = 'next';
