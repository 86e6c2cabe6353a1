//! One-time ids (client assertion and DPoP proof `jti`s), shared by every replica.

use super::*;
use crate::ReplayStore;

#[async_trait]
impl<DB: Dialect> ReplayStore for SqlStore<DB> {
    async fn use_once(
        &self,
        namespace: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        // Insert, or take over a row whose time is up; a live row makes it a no-op.
        let query = sqlx::query(
            "INSERT INTO used_jtis (namespace, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_jtis.expires_at <= $4",
        )
        .arg(namespace)
        .arg(jti)
        .arg(Ts(expires_at))
        .arg(Ts(now));
        Ok(self.exec(query, "one-time id").await? == 1)
    }

    async fn prune_used_ids(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let sql = "DELETE FROM used_jtis WHERE expires_at <= $1";
        self.prune(sql, now, "one-time id").await
    }
}
