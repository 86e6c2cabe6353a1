-- One-time ids of client assertions (RFC 7523 `jti`) and DPoP proofs (RFC 9449 `jti`):
-- each may be used once until it expires. The primary key makes a second use fail;
-- expired rows are pruned (and may be reused in place).

CREATE TABLE used_jtis (
    namespace  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, jti)
) STRICT;
CREATE INDEX used_jtis_expires_at_idx ON used_jtis (expires_at);
