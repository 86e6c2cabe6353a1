//! Signing keys and their lifecycle. Every step is one write transaction holding the
//! key lock ([`Dialect::XACT_LOCK`] on Postgres, `BEGIN IMMEDIATE` on SQLite); under it
//! the step re-reads the keys and checks its rule.

use std::collections::BTreeMap;

use super::*;
use crate::{
    AuditEvent, KeyChange, KeyState, KeyStep, KeyStore, NewSigningKey, RewrappedKey,
    SigningKeyRecord, active_key, next_key,
};

fn signing_key<R: RowExt>(row: &R) -> StoreResult<SigningKeyRecord> {
    let state: String = row.col("state")?;
    let time = |column| row.col::<Option<Ts>>(column).map(|t| t.map(|t| t.0));
    let created_at = row.col::<Ts>("created_at")?.0;
    Ok(SigningKeyRecord {
        id: row.col("id")?,
        state: KeyState::parse(&state).ok_or(StoreError::Corrupt("signing_keys.state"))?,
        public_key: row.col("public_key")?,
        private_key_enc: row.col("private_key_enc")?,
        created_at,
        // Nullable on SQLite only because it cannot add a NOT NULL column without a
        // default (migration 0004); every row the store writes has it.
        published_at: time("published_at")?.unwrap_or(created_at),
        activated_at: time("activated_at")?,
        rotate_requested_at: time("rotate_requested_at")?,
        retired_at: time("retired_at")?,
        removes_at: time("removes_at")?,
        removed_at: time("removed_at")?,
        revoked_at: time("revoked_at")?,
    })
}

/// Every key not yet `gone`, newest first.
const LIVE_KEYS: &str =
    "SELECT * FROM signing_keys WHERE state <> 'gone' ORDER BY created_at DESC, id";

/// Starts a key-lifecycle transaction: takes the lock that serializes key changes across
/// processes, then reads the keys not yet `gone` as they are under it.
async fn begin_key_step<DB: Dialect>(
    store: &SqlStore<DB>,
) -> StoreResult<(WriteTx<DB>, Vec<SigningKeyRecord>)> {
    let mut tx = store.begin("signing key").await?;
    lock::<DB>(&mut tx, KEY_LOCK, "signing key").await?;
    let rows = sqlx::query(LIVE_KEYS)
        .fetch_all(DB::conn(&mut tx))
        .await
        .or_store("signing key")?;
    let keys = rows.iter().map(signing_key).collect::<StoreResult<_>>()?;
    Ok((tx, keys))
}

/// Commits a key-lifecycle transaction with the audit events of its changes.
async fn commit_key_step<DB: Dialect>(
    mut tx: WriteTx<DB>,
    changes: Vec<KeyChange>,
    step: &KeyStep<'_>,
) -> StoreResult<Vec<KeyChange>> {
    let events: Vec<AuditEvent> = changes.iter().map(|c| (step.audit)(c)).collect();
    audit::insert_audit_events::<DB, _>(&mut tx, &events).await?;
    tx.commit().await.or_store("signing key")?;
    Ok(changes)
}

async fn insert_key<DB: Dialect>(
    conn: &mut DB::Connection,
    key: &NewSigningKey,
    state: KeyState,
    now: OffsetDateTime,
) -> StoreResult<KeyChange> {
    let activated_at = (state == KeyState::Active).then_some(Ts(now));
    let query = sqlx::query(
        "INSERT INTO signing_keys (id, state, public_key, private_key_enc, created_at, published_at, activated_at)
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
    .arg(&key.id)
    .arg(state.as_str())
    .arg(&key.public_key)
    .arg(&key.private_key_enc)
    .arg(Ts(now))
    .arg(activated_at);
    SqlStore::<DB>::run(conn, query, "signing key").await?;
    Ok(KeyChange {
        id: key.id.clone(),
        from: None,
        to: state,
        at: now,
        revoked: false,
    })
}

/// Moves `key` to `to` (`retired`, `active` or `gone`; `revoke` also marks its tokens
/// invalid). The update names the key in the state the locked read found it in; any
/// other count means the read was stale, and the whole step rolls back.
async fn move_key<DB: Dialect>(
    conn: &mut DB::Connection,
    key: &SigningKeyRecord,
    step: &KeyStep<'_>,
    to: KeyState,
    revoke: bool,
) -> StoreResult<KeyChange> {
    let query = match to {
        // It signs no more and leaves the key set after the hold.
        KeyState::Retired => sqlx::query::<DB>(
            "UPDATE signing_keys SET state = 'retired', retired_at = $2, removes_at = $3
             WHERE id = $1 AND state = 'active'",
        )
        .arg(&key.id)
        .arg(Ts(step.now))
        .arg(Ts(step.policy.removes_at(step.now))),
        KeyState::Active => sqlx::query(
            "UPDATE signing_keys SET state = 'active', activated_at = $2 WHERE id = $1 AND state = 'next'",
        )
        .arg(&key.id)
        .arg(Ts(step.now)),
        // Unpublished, its private half wiped.
        KeyState::Next | KeyState::Gone => sqlx::query(
            "UPDATE signing_keys SET state = 'gone', private_key_enc = $3, removed_at = $2,
                 retired_at = COALESCE(retired_at, $2),
                 revoked_at = CASE WHEN $4 THEN $2 ELSE revoked_at END
             WHERE id = $1 AND state = $5",
        )
        .arg(&key.id)
        .arg(Ts(step.now))
        .arg(Vec::<u8>::new())
        .arg(revoke)
        .arg(key.state.as_str()),
    };
    if SqlStore::<DB>::run(conn, query, "signing key").await? != 1 {
        return Err(StoreError::Stale("signing key"));
    }
    Ok(KeyChange {
        id: key.id.clone(),
        from: Some(key.state),
        to,
        at: step.now,
        revoked: revoke,
    })
}

#[async_trait]
impl<DB: Dialect> KeyStore for SqlStore<DB> {
    async fn ensure_active_key(
        &self,
        candidate: SigningKeyRecord,
    ) -> StoreResult<SigningKeyRecord> {
        // Serializes first-start key creation across processes: check-then-insert
        // cannot race.
        let mut tx = self.begin("signing key").await?;
        lock::<DB>(&mut tx, KEY_LOCK, "signing key").await?;
        let existing = sqlx::query("SELECT * FROM signing_keys WHERE state = 'active'")
            .fetch_optional(DB::conn(&mut tx))
            .await
            .or_store("signing key")?;
        if let Some(row) = existing {
            return signing_key(&row);
        }
        let query = sqlx::query(
            "INSERT INTO signing_keys (id, state, public_key, private_key_enc, created_at, published_at, activated_at, retired_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .arg(&candidate.id)
        .arg(candidate.state.as_str())
        .arg(&candidate.public_key)
        .arg(&candidate.private_key_enc)
        .arg(Ts(candidate.created_at))
        .arg(Ts(candidate.published_at))
        .arg(candidate.activated_at.map(Ts))
        .arg(candidate.retired_at.map(Ts));
        Self::run(&mut tx, query, "signing key").await?;
        tx.commit().await.or_store("signing key")?;
        Ok(candidate)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.all(sqlx::query(LIVE_KEYS), signing_key, "signing key")
            .await
    }

    async fn all_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let sql = "SELECT * FROM signing_keys ORDER BY created_at DESC, id";
        self.all(sqlx::query(sql), signing_key, "signing key").await
    }

    async fn publish_next_key(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(self).await?;
        if !step.policy.next_key_due(&keys, step.now) {
            return Ok(Vec::new());
        }
        let published = insert_key::<DB>(&mut tx, &candidate, KeyState::Next, step.now).await?;
        commit_key_step(tx, vec![published], step).await
    }

    async fn request_rotation(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(self).await?;
        if let Some(active) = active_key(&keys) {
            let query = sqlx::query(
                "UPDATE signing_keys SET rotate_requested_at = $2
                 WHERE id = $1 AND rotate_requested_at IS NULL",
            )
            .arg(&active.id)
            .arg(Ts(step.now));
            Self::run(&mut tx, query, "signing key").await?;
        }
        let mut changes = Vec::new();
        if next_key(&keys).is_none() {
            changes.push(insert_key::<DB>(&mut tx, &candidate, KeyState::Next, step.now).await?);
        }
        commit_key_step(tx, changes, step).await
    }

    async fn activate_next_key(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(self).await?;
        let Some(next) = step.policy.activation_due(&keys, step.now) else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        // Retire first: at most one key is active at any moment (unique index).
        if let Some(active) = active_key(&keys) {
            changes.push(move_key::<DB>(&mut tx, active, step, KeyState::Retired, false).await?);
        }
        changes.push(move_key::<DB>(&mut tx, next, step, KeyState::Active, false).await?);
        commit_key_step(tx, changes, step).await
    }

    async fn emergency_rotate(
        &self,
        candidate: NewSigningKey,
        step: &KeyStep<'_>,
    ) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(self).await?;
        let mut changes = Vec::new();
        if let Some(active) = active_key(&keys) {
            changes.push(move_key::<DB>(&mut tx, active, step, KeyState::Gone, true).await?);
        }
        match next_key(&keys) {
            Some(next) => {
                changes.push(move_key::<DB>(&mut tx, next, step, KeyState::Active, false).await?)
            }
            None => {
                let active = KeyState::Active;
                changes.push(insert_key::<DB>(&mut tx, &candidate, active, step.now).await?);
            }
        }
        commit_key_step(tx, changes, step).await
    }

    async fn remove_retired_keys(&self, step: &KeyStep<'_>) -> StoreResult<Vec<KeyChange>> {
        let (mut tx, keys) = begin_key_step(self).await?;
        let mut changes = Vec::new();
        for key in keys.iter().filter(|k| step.policy.removal_due(k, step.now)) {
            changes.push(move_key::<DB>(&mut tx, key, step, KeyState::Gone, false).await?);
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        commit_key_step(tx, changes, step).await
    }

    async fn rewrap_signing_keys(
        &self,
        keys: &[RewrappedKey],
        audit: AuditEvent,
    ) -> StoreResult<()> {
        let (mut tx, _) = begin_key_step(self).await?;
        let rows = sqlx::query(
            "SELECT id, private_key_enc FROM signing_keys WHERE length(private_key_enc) > 0",
        )
        .fetch_all(DB::conn(&mut tx))
        .await
        .or_store("signing key")?;
        let held = rows
            .iter()
            .map(|row| Ok((row.col("id")?, row.col("private_key_enc")?)))
            .collect::<StoreResult<BTreeMap<String, Vec<u8>>>>()?;
        if !crate::lifecycle::rewrap_matches(&held, keys) {
            return Err(StoreError::Stale("signing keys"));
        }
        for key in keys {
            let sql = "UPDATE signing_keys SET private_key_enc = $2 WHERE id = $1";
            let query = sqlx::query(sql).arg(&key.id).arg(&key.new);
            Self::run(&mut tx, query, "signing key").await?;
        }
        audit::insert_audit_events::<DB, _>(&mut tx, &[audit]).await?;
        tx.commit().await.or_store("signing key")
    }
}
