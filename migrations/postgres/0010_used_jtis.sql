-- One-time ids of client assertions (RFC 7523 `jti`) and DPoP proofs (RFC 9449 `jti`):
-- each may be used once, on any replica, until it expires. The primary key makes a
-- second use fail; expired rows are pruned (and may be reused in place).

CREATE TABLE used_jtis (
    namespace  text NOT NULL,          -- 'assertion:<client id>' or 'dpop:<key thumbprint>'
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT used_jtis_pkey PRIMARY KEY (namespace, jti)
);
CREATE INDEX used_jtis_expires_at_idx ON used_jtis (expires_at);
