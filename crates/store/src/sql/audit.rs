//! The append-only audit log.

use super::*;
use std::borrow::Borrow;

use sqlx::Connection as _;
use sqlx::pool::PoolConnection;

use crate::{AuditEntry, AuditEvent, AuditQuery, AuditStore, ExternalIdentityFilter};

/// The columns of an audit event, in the order [`push_event`] binds them.
const AUDIT_COLUMNS: &str = "id, occurred_at, event_type, outcome, actor, subject, client_id, jti, audience, scopes, source_ip, user_agent, request_id, detail";

/// Pushes the values of `e`, [`AUDIT_COLUMNS`] in order, separated by commas.
fn push_event<DB: Dialect>(sql: &mut QueryBuilder<DB>, e: &AuditEvent) {
    DB::push_arg(sql, e.id);
    sql.push(", ");
    DB::push_arg(sql, Ts(e.occurred_at));
    for text in [&e.event_type, &e.outcome] {
        sql.push(", ");
        DB::push_arg(sql, text);
    }
    for text in [
        &e.actor,
        &e.subject,
        &e.client_id,
        &e.jti,
        &e.audience,
        &e.scopes,
        &e.source_ip,
        &e.user_agent,
        &e.request_id,
    ] {
        sql.push(", ");
        DB::push_arg(sql, text);
    }
    sql.push(", ");
    DB::push_arg(sql, Json(&e.detail));
}

/// Appends audit events on `conn`: one multi-row INSERT (one round trip) per
/// [`Dialect::AUDIT_CHUNK`] events.
pub(super) async fn insert_audit_events<DB: Dialect, E: Borrow<AuditEvent>>(
    conn: &mut DB::Connection,
    events: &[E],
) -> StoreResult<()> {
    for chunk in events.chunks(DB::AUDIT_CHUNK) {
        let mut sql = QueryBuilder::<DB>::new("INSERT INTO audit_events (");
        sql.push(AUDIT_COLUMNS).push(") VALUES ");
        for (i, e) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            push_event(&mut sql, e.borrow());
            sql.push(")");
        }
        sql.build()
            .execute(DB::conn(conn))
            .await
            .or_store("audit event")?;
    }
    Ok(())
}

impl<DB: Dialect> SqlStore<DB> {
    /// Appends events with one commit (one WAL flush, one fsync) however many they are.
    async fn append_events<E: Borrow<AuditEvent> + Sync>(&self, events: &[E]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.on_write_conn(async |conn| append_on::<DB, E>(conn, events).await)
            .await
    }

    /// Runs `write` on the connection this process writes the audit log on, kept out
    /// of the pool (see [`Kept`]); on a database with one writer, in the turn to write.
    pub(crate) async fn on_write_conn<T>(
        &self,
        write: impl AsyncFnOnce(&mut PoolConnection<DB>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut kept = self.audit_writer.lock().await;
        Kept::run(Some(&mut kept), &self.pool, "audit event", write).await
    }
}

/// Appends `events` on `conn` with one commit.
async fn append_on<DB: Dialect, E: Borrow<AuditEvent> + Sync>(
    conn: &mut PoolConnection<DB>,
    events: &[E],
) -> StoreResult<()> {
    // A batch that fits one statement is that statement in autocommit: as atomic and
    // durable as a transaction, with fewer round trips.
    if events.len() <= DB::AUDIT_CHUNK {
        return insert_audit_events::<DB, E>(conn, events).await;
    }
    // Larger than one statement may bind: all chunks or none.
    let mut tx = begin_on::<DB>(conn).await?;
    insert_audit_events::<DB, E>(&mut tx, events).await?;
    tx.commit().await.or_store("audit event")
}

/// Applies the entries' rotations and appends the events of those that applied, in one
/// transaction on `conn`; whether each applied.
async fn rotate_and_append<DB: Dialect>(
    conn: &mut PoolConnection<DB>,
    entries: &[AuditEntry],
) -> StoreResult<Vec<bool>> {
    if entries.len() <= DB::AUDIT_CHUNK {
        return rotate_and_append_in_one_trip::<DB>(conn, entries).await;
    }
    let mut tx = begin_on::<DB>(conn).await?;
    let rotations: Vec<_> = entries.iter().map(|e| e.rotation.as_ref()).collect();
    let applied = super::refresh::rotate_in::<DB>(&mut tx, &rotations).await?;
    let events: Vec<&AuditEvent> = entries
        .iter()
        .zip(&applied)
        .filter_map(|(e, applied)| applied.then_some(&e.event))
        .collect();
    insert_audit_events::<DB, _>(&mut tx, &events).await?;
    tx.commit().await.or_store("audit event")?;
    Ok(applied)
}

/// [`rotate_and_append`] in one round trip, for a batch that fits one statement's
/// parameters. Where a statement may make several writes
/// ([`Dialect::ONE_STATEMENT_WRITES`], Postgres), one statement in autocommit: the UPDATE
/// marking the tokens used, the INSERT of the successors of those it marked and the
/// INSERT of the events (of every entry without a rotation, and of those whose rotation
/// it marked). Elsewhere (SQLite), one script in one trip to the connection's thread: in
/// one write transaction (`BEGIN IMMEDIATE`: no other writer in between), the events of
/// the entries without a rotation or whose token is
/// [`ROTATABLE`](super::refresh::ROTATABLE), the successors of those tokens, then the
/// UPDATE marking them used. The three test the same condition on the same state, so
/// they agree. Either way the UPDATE returns the tokens it marked.
async fn rotate_and_append_in_one_trip<DB: Dialect>(
    conn: &mut PoolConnection<DB>,
    entries: &[AuditEntry],
) -> StoreResult<Vec<bool>> {
    let rotations: Vec<_> = entries.iter().map(|e| e.rotation.as_ref()).collect();
    let (mut applied, wanted) = super::refresh::first_uses(&rotations);
    let Some(now) = wanted.iter().map(|(_, r)| r.now).max() else {
        let events: Vec<&AuditEvent> = entries.iter().map(|e| &e.event).collect();
        insert_audit_events::<DB, _>(conn, &events).await?;
        return Ok(applied);
    };
    let olds = wanted.iter().map(|(_, r)| r.old);
    let mut sql;
    if DB::ONE_STATEMENT_WRITES {
        sql = QueryBuilder::<DB>::new("WITH marked AS (");
        super::refresh::push_mark_used(&mut sql, now, olds);
        sql.push(
            "), successors AS (\
             INSERT INTO refresh_tokens (selector, digest, family_id, created_at, expires_at) \
             SELECT v.selector, v.digest, m.family_id, v.created_at, v.expires_at FROM (VALUES ",
        );
        push_successors(&mut sql, &wanted);
        sql.push(
            ") AS v (old, selector, digest, created_at, expires_at) \
             JOIN marked m ON m.selector = v.old), \
             events AS (INSERT INTO audit_events (",
        );
        sql.push(AUDIT_COLUMNS)
            .push(") SELECT ")
            .push(AUDIT_COLUMNS)
            .push(" FROM (VALUES ");
        push_candidates(&mut sql, entries, &applied);
        sql.push(") AS e (rotates, ").push(AUDIT_COLUMNS).push(
            ") WHERE e.rotates IS NULL OR e.rotates IN (SELECT selector FROM marked)) \
             SELECT selector FROM marked",
        );
    } else {
        let rotatable = super::refresh::ROTATABLE;
        sql = QueryBuilder::<DB>::new(DB::BEGIN_WRITE.unwrap_or("BEGIN"));
        sql.push("; WITH e (rotates, ")
            .push(AUDIT_COLUMNS)
            .push(") AS (VALUES ");
        push_candidates(&mut sql, entries, &applied);
        sql.push(") INSERT INTO audit_events (")
            .push(AUDIT_COLUMNS)
            .push(") SELECT ")
            .push(AUDIT_COLUMNS)
            .push(
                " FROM e WHERE e.rotates IS NULL OR EXISTS (SELECT 1 FROM refresh_tokens \
                 WHERE refresh_tokens.selector = e.rotates AND ",
            )
            .push(rotatable)
            .push("); WITH v (old, selector, digest, created_at, expires_at) AS (VALUES ");
        push_successors(&mut sql, &wanted);
        sql.push(
            ") INSERT INTO refresh_tokens (selector, digest, family_id, created_at, expires_at) \
             SELECT v.selector, v.digest, refresh_tokens.family_id, v.created_at, v.expires_at \
             FROM v JOIN refresh_tokens ON refresh_tokens.selector = v.old WHERE ",
        )
        .push(rotatable)
        .push("; ");
        super::refresh::push_mark_used(&mut sql, now, olds);
        sql.push("; COMMIT");
    }
    let rows = match sql.build().fetch_all(DB::conn(conn)).await {
        Ok(rows) => rows,
        Err(e) => {
            // A script stops at the failing statement, inside its transaction.
            if !DB::ONE_STATEMENT_WRITES {
                let _ = sqlx::query("ROLLBACK").execute(DB::conn(conn)).await;
            }
            return Err(e).or_store("audit event");
        }
    };
    let mut marked: Vec<Uuid> = Vec::with_capacity(rows.len());
    for row in &rows {
        marked.push(row.col("selector")?);
    }
    for (i, rotation) in wanted {
        applied[i] = marked.contains(&rotation.old);
    }
    Ok(applied)
}

/// Pushes `(rotates, event...)` rows, comma-separated, for the entries that may apply:
/// an entry that repeats an earlier entry's token never does, and its event stays out.
fn push_candidates<DB: Dialect>(sql: &mut QueryBuilder<DB>, entries: &[AuditEntry], may: &[bool]) {
    let candidates = entries.iter().zip(may).filter(|(_, may)| **may);
    for (n, (entry, _)) in candidates.enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" });
        DB::push_arg(sql, entry.rotation.as_ref().map(|r| r.old));
        sql.push(", ");
        push_event(sql, &entry.event);
        sql.push(")");
    }
}

/// Pushes `(old, selector, digest, created_at, expires_at)` rows, comma-separated: each
/// wanted rotation's token and its successor.
fn push_successors<DB: Dialect>(
    sql: &mut QueryBuilder<DB>,
    wanted: &[(usize, &crate::RefreshRotation)],
) {
    for (n, (_, rotation)) in wanted.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" });
        DB::push_arg(sql, rotation.old);
        sql.push(", ");
        super::refresh::push_successor(sql, rotation);
        sql.push(")");
    }
}

/// Begins a write transaction on `conn` (the caller holds the turn to write). Dropped
/// uncommitted, it rolls back before the connection's next use.
async fn begin_on<DB: Dialect>(
    conn: &mut PoolConnection<DB>,
) -> StoreResult<sqlx::Transaction<'_, DB>> {
    match DB::BEGIN_WRITE {
        Some(begin) => conn.begin_with(begin).await,
        None => conn.begin().await,
    }
    .or_store("audit event")
}

fn audit_event<R: RowExt>(row: &R) -> StoreResult<AuditEvent> {
    let Json(detail) = row.col("detail")?;
    Ok(AuditEvent {
        id: row.col("id")?,
        occurred_at: row.col::<Ts>("occurred_at")?.0,
        event_type: row.col("event_type")?,
        outcome: row.col("outcome")?,
        actor: row.col("actor")?,
        subject: row.col("subject")?,
        client_id: row.col("client_id")?,
        jti: row.col("jti")?,
        audience: row.col("audience")?,
        scopes: row.col("scopes")?,
        source_ip: row.col("source_ip")?,
        user_agent: row.col("user_agent")?,
        request_id: row.col("request_id")?,
        detail,
    })
}

#[async_trait]
impl<DB: Dialect> AuditStore for SqlStore<DB> {
    async fn append_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        self.append_events(events).await
    }

    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<Vec<bool>> {
        if entries.iter().all(|e| e.rotation.is_none()) {
            let events: Vec<&AuditEvent> = entries.iter().map(|e| &e.event).collect();
            self.append_events(&events).await?;
            return Ok(vec![true; entries.len()]);
        }
        // The rotations and the events that record them: all or nothing, one commit.
        self.on_write_conn(async |conn| rotate_and_append::<DB>(conn, entries).await)
            .await
    }

    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.audit_events_by_external(query, &ExternalIdentityFilter::default())
            .await
    }

    async fn audit_events_by_external(
        &self,
        query: &AuditQuery,
        external: &ExternalIdentityFilter,
    ) -> StoreResult<Vec<AuditEvent>> {
        let limit = query.limit.min(1000) as usize;
        let mut found = Vec::new();
        let mut before = query.before;
        // Where the dialect cannot filter by network exactly, the rest is filtered here,
        // reading batches until the page is full or the log is exhausted.
        loop {
            // Only the filters given become SQL, so the planner can use the matching index.
            let mut sql = QueryBuilder::<DB>::new("SELECT * FROM audit_events WHERE TRUE");
            for (column, value) in [
                ("event_type", &query.event_type),
                ("client_id", &query.client_id),
                ("outcome", &query.outcome),
                ("subject", &query.subject),
                ("jti", &query.jti),
                ("audience", &query.audience),
            ] {
                if let Some(value) = value {
                    sql.push(" AND ").push(column).push(" = ");
                    DB::push_arg(&mut sql, value);
                }
            }
            // The same expressions as Postgres's audit_events_external_idx (0014).
            for (key, value) in [("issuer", &external.issuer), ("subject", &external.subject)] {
                if let Some(value) = value {
                    sql.push(" AND ")
                        .push(DB::json_text("detail", &["external", key]))
                        .push(" = ");
                    DB::push_arg(&mut sql, value);
                }
            }
            let exact = query
                .network
                .is_none_or(|net| DB::push_network(&mut sql, net));
            if let Some(since) = query.since {
                sql.push(" AND occurred_at >= ");
                DB::push_arg(&mut sql, Ts(since));
            }
            if let Some(until) = query.until {
                sql.push(" AND occurred_at < ");
                DB::push_arg(&mut sql, Ts(until));
            }
            if let Some((at, id)) = before {
                DB::push_before(&mut sql, at, id);
            }
            let batch = if exact { limit.max(1) } else { 1000 };
            sql.push(" ORDER BY occurred_at DESC, id DESC LIMIT ");
            DB::push_arg(&mut sql, batch as i64);
            let events = self.all(sql.build(), audit_event, "audit event").await?;
            let exhausted = events.len() < batch;
            before = events.last().map(|e| (e.occurred_at, e.id));
            found.extend(events.into_iter().filter(|e| {
                exact
                    || query.network.is_none_or(|net| {
                        e.source_ip
                            .as_deref()
                            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                            .is_some_and(|ip| net.contains(&ip))
                    })
            }));
            if found.len() >= limit || exhausted {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    async fn prune_audit_events(&self, before: OffsetDateTime) -> StoreResult<u64> {
        // In slices, so a large backlog never holds one long transaction.
        let mut total = 0;
        loop {
            let sql = "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE occurred_at < $1 LIMIT 10000)";
            let done = self.prune(sql, before, "audit event").await?;
            total += done;
            if done < 10000 {
                return Ok(total);
            }
        }
    }
}
