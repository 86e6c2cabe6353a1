-- Refresh tokens are found by a selector, then checked against their digest. A token
-- minted from now on carries its selector (a UUIDv7, so new rows go to the end of the
-- index instead of a random page); a token minted before has the first 16 bytes of its
-- digest as selector, which is what the server derives for a token of the old form.
ALTER TABLE refresh_tokens ADD COLUMN selector uuid;
UPDATE refresh_tokens SET selector = encode(substring(digest FROM 1 FOR 16), 'hex')::uuid;
ALTER TABLE refresh_tokens ALTER COLUMN selector SET NOT NULL;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_pkey;
ALTER TABLE refresh_tokens ADD PRIMARY KEY (selector);
