//! Refresh token families: one per login, one live token per family at a time.

use super::*;
use crate::{
    NewRefreshFamily, NewRevocation, PrunedRefresh, RefreshFamilyRecord, RefreshKey,
    RefreshRotation, RefreshStore, RefreshTokenRecord, RevocationRecord,
};
use subtle::ConstantTimeEq as _;

fn refresh_family<R: RowExt>(row: &R) -> StoreResult<RefreshFamilyRecord> {
    Ok(RefreshFamilyRecord {
        id: row.col("id")?,
        user_id: row.col("user_id")?,
        client_id: row.col("client_id")?,
        audience: row.col("audience")?,
        scope: row.col("scope")?,
        created_at: row.col::<Ts>("created_at")?.0,
        expires_at: row.col::<Ts>("expires_at")?.0,
        revoked_at: row.col::<Option<Ts>>("revoked_at")?.map(|t| t.0),
        jkt: row.col("jkt")?,
    })
}

fn refresh_token<R: RowExt>(row: &R) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        family: refresh_family(row)?,
        created_at: row.col::<Ts>("token_created_at")?.0,
        expires_at: row.col::<Ts>("token_expires_at")?.0,
        used_at: row.col::<Option<Ts>>("used_at")?.map(|t| t.0),
        user_enabled: row.col("user_enabled")?,
    })
}

/// Whether the `refresh_tokens` row in scope may rotate: unused, its family not
/// revoked, its user enabled. The server may sign before it reads the token again (a
/// token it minted itself), so this is where those conditions hold at commit.
///
/// The family and the user are looked up per token by their keys, in a scalar
/// subquery: an `IN (SELECT ...)`, or an `EXISTS` the planner may turn into a join,
/// let Postgres start from the users, read every live family and intersect each one's
/// tokens with the batch (3 ms instead of 0.1 for 36k tokens of one user, growing with
/// the table).
pub(super) const ROTATABLE: &str = "refresh_tokens.used_at IS NULL \
     AND (SELECT u.enabled FROM refresh_families f JOIN users u ON u.id = f.user_id \
          WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL)";

/// Pushes the UPDATE that marks the tokens of `selectors` used at `now`, those that
/// are [`ROTATABLE`], returning `selector, family_id` of each it marked.
pub(super) fn push_mark_used<DB: Dialect>(
    sql: &mut QueryBuilder<DB>,
    now: OffsetDateTime,
    selectors: impl IntoIterator<Item = Uuid>,
) {
    // Concurrent transactions take turns at each row (Postgres: row locks, the loser
    // re-reads `used_at`; SQLite: one writer), so a token is marked used once.
    sql.push("UPDATE refresh_tokens SET used_at = ");
    DB::push_arg(sql, Ts(now));
    sql.push(" WHERE ").push(ROTATABLE).push(" AND ");
    push_selectors_in(sql, selectors);
    sql.push(" RETURNING selector, family_id");
}

/// Pushes `selector IN (…)`, each of `selectors` bound.
fn push_selectors_in<DB: Dialect>(
    sql: &mut QueryBuilder<DB>,
    selectors: impl IntoIterator<Item = Uuid>,
) {
    sql.push("selector IN (");
    for (n, selector) in selectors.into_iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        DB::push_arg(sql, selector);
    }
    sql.push(")");
}

/// Pushes the successor `rotation` stores: its `selector, digest, created_at,
/// expires_at`, separated by commas.
pub(super) fn push_successor<DB: Dialect>(sql: &mut QueryBuilder<DB>, rotation: &RefreshRotation) {
    DB::push_arg(sql, rotation.new.selector);
    sql.push(", ");
    DB::push_arg(sql, &rotation.new.digest[..]);
    sql.push(", ");
    DB::push_arg(sql, Ts(rotation.now));
    sql.push(", ");
    DB::push_arg(sql, Ts(rotation.expires_at));
}

/// Which of `rotations` may apply (`None` entries always; a rotation of a token an
/// earlier entry rotates never: of concurrent uses of one token exactly one wins), and
/// the first rotation of each token with its entry's index.
pub(super) fn first_uses<'r>(
    rotations: &[Option<&'r RefreshRotation>],
) -> (Vec<bool>, Vec<(usize, &'r RefreshRotation)>) {
    let mut applied = vec![true; rotations.len()];
    let mut wanted: Vec<(usize, &RefreshRotation)> = Vec::new();
    for (i, rotation) in rotations.iter().enumerate() {
        let Some(rotation) = rotation else { continue };
        if wanted.iter().any(|(_, w)| w.old == rotation.old) {
            applied[i] = false;
        } else {
            wanted.push((i, rotation));
        }
    }
    (applied, wanted)
}

/// Applies `rotations` on `conn` (inside the caller's transaction): entry `i` is `None`
/// (nothing to rotate: applies) or a rotation, which applies only if its token is
/// [`ROTATABLE`] and no earlier entry rotates the same token (concurrent uses of one
/// token: exactly one wins). Two statements however many rotations: one UPDATE marks
/// every token used, one INSERT stores the successors of those it marked.
pub(super) async fn rotate_in<DB: Dialect>(
    conn: &mut DB::Connection,
    rotations: &[Option<&RefreshRotation>],
) -> StoreResult<Vec<bool>> {
    let (mut applied, wanted) = first_uses(rotations);
    let Some(now) = wanted.iter().map(|(_, r)| r.now).max() else {
        return Ok(applied);
    };
    let mut sql = QueryBuilder::<DB>::new("");
    push_mark_used(&mut sql, now, wanted.iter().map(|(_, r)| r.old));
    let rows = sql
        .build()
        .fetch_all(DB::conn(conn))
        .await
        .or_store("refresh token")?;
    let mut marked: Vec<(Uuid, Uuid)> = Vec::with_capacity(rows.len());
    for row in &rows {
        marked.push((row.col("selector")?, row.col("family_id")?));
    }
    let mut successors: Vec<(&RefreshRotation, Uuid)> = Vec::with_capacity(marked.len());
    for (i, rotation) in wanted {
        match marked
            .iter()
            .find(|(selector, _)| *selector == rotation.old)
        {
            Some((_, family)) => successors.push((rotation, *family)),
            None => applied[i] = false,
        }
    }
    if successors.is_empty() {
        return Ok(applied);
    }
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO refresh_tokens (selector, digest, created_at, expires_at, family_id) VALUES ",
    );
    for (n, (rotation, family)) in successors.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" });
        push_successor(&mut sql, rotation);
        sql.push(", ");
        DB::push_arg(&mut sql, *family);
        sql.push(")");
    }
    sql.build()
        .execute(DB::conn(conn))
        .await
        .or_store("refresh token")?;
    Ok(applied)
}

const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens (selector, digest, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";

impl<DB: Dialect> SqlStore<DB> {
    /// Deletes the rows `sql` finds expired at `$1`; returns how many.
    pub(super) async fn prune(
        &self,
        sql: &'static str,
        now: OffsetDateTime,
        entity: &'static str,
    ) -> StoreResult<u64> {
        self.exec(sqlx::query(sql).arg(Ts(now)), entity).await
    }
}

#[async_trait]
impl<DB: Dialect> RefreshStore for SqlStore<DB> {
    async fn create_refresh_family(
        &self,
        new: NewRefreshFamily,
    ) -> StoreResult<RefreshFamilyRecord> {
        let mut tx = self.begin("refresh family").await?;
        let row = sqlx::query(
            "INSERT INTO refresh_families (id, user_id, client_id, audience, scope, created_at, expires_at, jkt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .arg(new.id)
        .arg(new.user_id)
        .arg(new.client_id)
        .arg(&new.audience)
        .arg(&new.scope)
        .arg(Ts(new.now))
        .arg(Ts(new.expires_at))
        .arg(&new.jkt)
        .fetch_one(DB::conn(&mut tx))
        .await
        .or_store("user or client")?;
        let query = sqlx::query(INSERT_TOKEN)
            .arg(new.key.selector)
            .arg(&new.key.digest[..])
            .arg(new.id)
            .arg(Ts(new.now))
            .arg(Ts(new.token_expires_at));
        Self::run(&mut tx, query, "refresh token").await?;
        let family = refresh_family(&row)?;
        tx.commit().await.or_store("refresh family")?;
        Ok(family)
    }

    async fn refresh_token(&self, key: &RefreshKey) -> StoreResult<Option<RefreshTokenRecord>> {
        let query = sqlx::query(
            "SELECT f.*, t.digest, t.created_at AS token_created_at,
                    t.expires_at AS token_expires_at, t.used_at, u.enabled AS user_enabled
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
             JOIN users u ON u.id = f.user_id
             WHERE t.selector = $1",
        )
        .arg(key.selector);
        let found = self
            .optional(
                query,
                |row| Ok((row.col::<Vec<u8>>("digest")?, refresh_token(row)?)),
                "refresh token",
            )
            .await?;
        Ok(found.and_then(|(digest, record)| {
            bool::from(digest.ct_eq(&key.digest[..])).then_some(record)
        }))
    }

    async fn revoke_refresh_family(
        &self,
        family_id: Uuid,
        revocation: NewRevocation,
    ) -> StoreResult<RevocationRecord> {
        let mut tx = self.begin("refresh family").await?;
        let sql = "UPDATE refresh_families SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";
        let query = sqlx::query(sql).arg(family_id).arg(Ts(revocation.now));
        Self::run(&mut tx, query, "refresh family").await?;
        let record = revocations::insert_revocation::<DB>(&mut tx, &revocation).await?;
        tx.commit().await.or_store("refresh family")?;
        self.revoked();
        Ok(record)
    }

    async fn prune_refresh_families(&self, now: OffsetDateTime) -> StoreResult<PrunedRefresh> {
        let sql = "DELETE FROM refresh_families WHERE expires_at <= $1";
        let families = self.prune(sql, now, "refresh family").await?;
        let tokens = self.prune_orphan_tokens().await?;
        Ok(PrunedRefresh { families, tokens })
    }
}

/// Tokens whose family is gone, deleted per write (see [`SqlStore::prune_orphan_tokens`]);
/// a few under test, so the contract tests cross slices.
const ORPHAN_SLICE: i64 = if cfg!(test) { 3 } else { 1000 };

/// The `refresh_tokens` row in scope belongs to no family: it can no longer be read or
/// rotated, only deleted.
const FAMILY_GONE: &str =
    "NOT EXISTS (SELECT 1 FROM refresh_families f WHERE f.id = refresh_tokens.family_id)";

impl<DB: Dialect> SqlStore<DB> {
    /// Deletes the tokens whose family is gone. No index leads from a family to its
    /// tokens (migration 0017: on SQLite it cost a page write per rotation), so reads
    /// find them, in selector order from where the last slice ended: one pass over the
    /// table, and no write held while it reads (SQLite has one writer). Each slice is
    /// one short write, which checks again that the family is gone.
    async fn prune_orphan_tokens(&self) -> StoreResult<u64> {
        let mut after = Uuid::nil();
        let mut deleted = 0;
        loop {
            let mut sql = QueryBuilder::<DB>::new("SELECT selector FROM refresh_tokens WHERE ");
            sql.push(FAMILY_GONE).push(" AND selector > ");
            DB::push_arg(&mut sql, after);
            sql.push(" ORDER BY selector LIMIT ");
            DB::push_arg(&mut sql, ORPHAN_SLICE);
            let found = self
                .all(
                    sql.build(),
                    |row| row.col::<Uuid>("selector"),
                    "refresh token",
                )
                .await?;
            let Some(&last) = found.last() else {
                return Ok(deleted);
            };
            let mut sql = QueryBuilder::<DB>::new("DELETE FROM refresh_tokens WHERE ");
            sql.push(FAMILY_GONE).push(" AND ");
            push_selectors_in(&mut sql, found.iter().copied());
            deleted += self.exec(sql.build(), "refresh token").await?;
            if found.len() < ORPHAN_SLICE as usize {
                return Ok(deleted);
            }
            after = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{QueryBuilder, Row as _, Sqlite};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use crate::sqlite::SqliteStore;
    use crate::testing::TestDb;
    use crate::{Backend, Store as _};

    /// A rotation batch looks up each token's family by its key: its cost does not grow
    /// with the number of logins the store holds.
    #[tokio::test]
    async fn marking_tokens_used_reads_no_table_whole() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = SqliteStore::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let mut sql = QueryBuilder::<Sqlite>::new("EXPLAIN QUERY PLAN ");
        super::push_mark_used(
            &mut sql,
            OffsetDateTime::UNIX_EPOCH,
            [Uuid::now_v7(), Uuid::now_v7()],
        );
        let plan: Vec<String> = sql
            .build()
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get("detail"))
            .collect();
        assert!(
            plan.iter().any(|step| step.contains("refresh_families")),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "no step reads a whole table: {plan:?}"
        );
    }
}
