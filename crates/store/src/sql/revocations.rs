//! Revocations and their feed. Inserts are serialized ([`Dialect::XACT_LOCK`], or the
//! SQLite write lock) so `seq` order is commit order and the feed never skips a row.

use super::*;
use crate::{AuditEvent, NewRevocation, RevocationRecord, RevocationStore};

fn revocation<R: RowExt>(row: &R) -> StoreResult<RevocationRecord> {
    Ok(RevocationRecord {
        seq: row.col("seq")?,
        id: row.col("id")?,
        kind: row.col("kind")?,
        value: row.col("value")?,
        issued_before: row.col::<Ts>("issued_before")?.0,
        expires_at: row.col::<Ts>("expires_at")?.0,
        reason: row.col("reason")?,
        created_by: row.col("created_by")?,
        created_at: row.col::<Ts>("created_at")?.0,
    })
}

/// Records a revocation in the caller's transaction and ends the refresh families it
/// covers. Where the dialect has `NOTIFY`, the announcement goes out with the commit;
/// otherwise the caller raises the local signal after it ([`SqlStore::revoked`]).
pub(super) async fn insert_revocation<DB: Dialect>(
    conn: &mut DB::Connection,
    new: &NewRevocation,
) -> StoreResult<RevocationRecord> {
    lock::<DB>(conn, REVOCATION_LOCK, "revocation").await?;
    let row = sqlx::query(
        "INSERT INTO revocations (id, kind, value, issued_before, expires_at, reason, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .arg(Uuid::now_v7())
    .arg(&new.kind)
    .arg(&new.value)
    .arg(Ts(new.issued_before))
    .arg(Ts(new.expires_at))
    .arg(&new.reason)
    .arg(&new.created_by)
    .arg(Ts(new.now))
    .fetch_one(DB::conn(conn))
    .await
    .or_store("revocation")?;
    let record = revocation(&row)?;
    if let Some((sql, id)) = crate::ended_families(&new.kind, &new.value) {
        let query = sqlx::query::<DB>(sql).arg(Ts(new.now)).arg(id);
        SqlStore::<DB>::run(conn, query.arg(Ts(new.issued_before)), "refresh family").await?;
    }
    if let Some(notify) = DB::NOTIFY {
        let query = sqlx::query::<DB>(notify).arg(REVOCATION_CHANNEL);
        SqlStore::<DB>::run(conn, query.arg(record.seq.to_string()), "revocation").await?;
    }
    Ok(record)
}

#[async_trait]
impl<DB: Dialect> RevocationStore for SqlStore<DB> {
    async fn insert_audited_revocation(
        &self,
        new: NewRevocation,
        events: &[AuditEvent],
    ) -> StoreResult<RevocationRecord> {
        let mut tx = self.begin("revocation").await?;
        let record = insert_revocation::<DB>(&mut tx, &new).await?;
        audit::insert_audit_events::<DB, _>(&mut tx, events).await?;
        tx.commit().await.or_store("revocation")?;
        self.revoked();
        Ok(record)
    }

    async fn insert_revocation(&self, new: NewRevocation) -> StoreResult<RevocationRecord> {
        self.insert_audited_revocation(new, &[]).await
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<RevocationRecord>> {
        let sql = "SELECT * FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2";
        let query = sqlx::query(sql).arg(after).arg(i64::from(limit));
        self.all(query, revocation, "revocation").await
    }

    async fn prune_revocations(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.prune(
            "DELETE FROM revocations WHERE expires_at <= $1",
            now,
            "revocation",
        )
        .await
    }

    async fn revocation_signal(&self) -> StoreResult<Option<Arc<tokio::sync::Notify>>> {
        let mut listening = self.listening.lock().await;
        if !*listening {
            DB::listen(&self.pool, self.signal.clone()).await?;
            *listening = true;
        }
        Ok(Some(self.signal.clone()))
    }
}
