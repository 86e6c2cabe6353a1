//! What each client has been seen doing: the anomaly baseline.

use super::*;
use crate::{Sighting, SightingKind, SightingStore};

#[async_trait]
impl<DB: Dialect> SightingStore for SqlStore<DB> {
    async fn record_sighting(
        &self,
        client_id: &str,
        kind: SightingKind,
        value: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Sighting> {
        let (inserted, others) = if let Some(sql) = DB::SIGHTING {
            let row = sqlx::query(sql)
                .arg(client_id)
                .arg(kind.as_str())
                .arg(value)
                .arg(Ts(now))
                .fetch_one(self.db())
                .await
                .or_store("sighting")?;
            (row.col("inserted")?, row.col("others")?)
        } else {
            let mut tx = self.begin("sighting").await?;
            let query = sqlx::query(
                "INSERT INTO client_sightings (client_id, kind, value, first_seen)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .arg(client_id)
            .arg(kind.as_str())
            .arg(value)
            .arg(Ts(now));
            let inserted = Self::run(&mut tx, query, "sighting").await? > 0;
            let row = sqlx::query(
                "SELECT EXISTS (SELECT 1 FROM client_sightings
                                WHERE client_id = $1 AND kind = $2 AND value <> $3) AS others",
            )
            .arg(client_id)
            .arg(kind.as_str())
            .arg(value)
            .fetch_one(DB::conn(&mut tx))
            .await
            .or_store("sighting")?;
            let others: bool = row.col("others")?;
            tx.commit().await.or_store("sighting")?;
            (inserted, others)
        };
        Ok(match (inserted, others) {
            (false, _) => Sighting::Known,
            (true, false) => Sighting::FirstOfKind,
            (true, true) => Sighting::New,
        })
    }
}
