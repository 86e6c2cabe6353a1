//! The Postgres store: production, shareable by several replicas. Its body is the
//! generic SQL store (`sql/`); this file holds what only Postgres does: connecting,
//! migrations, `timestamptz` times, advisory locks and `LISTEN`/`NOTIFY`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgQueryResult, PgTypeInfo, PgValueRef,
};
use sqlx::{Decode, Encode, Executor, PgConnection, PgPool, Pool, Postgres, QueryBuilder, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::SqlxResultExt;
use crate::sql::{Binds, Dialect, REVOCATION_CHANNEL, SqlStore, Ts};
use crate::{Backend, StoreError, StoreResult};

/// How long a pooled connection may sit idle and still be handed out without a ping.
const TRUST_IDLE: Duration = Duration::from_secs(1);

/// Asks this session's backend to start the kernel's writeback of the table and index
/// pages it writes out every 256 kB (`backend_flush_after`), unless the server, the
/// database, the role or the URL already chose a value. The audit log grows by every
/// token, and Postgres backends otherwise leave what they evict as dirty pages in the
/// page cache: 400 MB or more under load, until the kernel writes them all back at
/// once and the WAL flushes behind them wait (issuance p99 18-39 ms in the 10 s that
/// hold such a writeback; BENCHMARKS.md, session 11). No effect on durability: commits
/// are durable by their WAL flush either way.
const FLUSH_AFTER: &str = "SELECT set_config('backend_flush_after', '256kB', false) \
     FROM pg_settings WHERE name = 'backend_flush_after' AND source = 'default'";

/// A Postgres-backed [`Store`](crate::Store).
pub type PgStore = SqlStore<Postgres>;

impl PgStore {
    /// Connects lazily: the pool opens connections on first use, so a database that is
    /// down at start-up surfaces as [`StoreError::Unavailable`] on the first call.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be parsed.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(|_| StoreError::InvalidUrl)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            // Fail fast when the database is down, so callers can answer 503 quickly.
            .acquire_timeout(Duration::from_secs(3))
            // sqlx pings every connection as it returns to the pool, so one released a
            // moment ago is known alive: pinging it again on acquire would cost a round
            // trip per query (a third of the store's round trips). Only a connection
            // idle long enough for the server or the network to have dropped it is
            // pinged; one that fails is closed and another acquired.
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A server that refuses the setting (a platform without
                    // writeback control) still serves: the connection stays usable.
                    if let Err(e) = conn.execute(FLUSH_AFTER).await {
                        tracing::debug!(error = %e, "backend_flush_after not set");
                    }
                    Ok(())
                })
            })
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= TRUST_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self::new(pool))
    }
}

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const BEGIN_WRITE: Option<&'static str> = None;
    const ONE_WRITER: bool = false;
    /// Half the pool: a read on a pooled connection costs a second round trip (sqlx's
    /// ping as it returns to the pool). Under refresh load this cut Mayfly's CPU per
    /// refresh by a fifth (BENCHMARKS.md, session 10).
    const KEPT_READERS: usize = 8;
    const XACT_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock($1)");
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify($1, $2)");
    /// 14 parameters each, well under Postgres's 65,535.
    const AUDIT_CHUNK: usize = 1000;
    const ONE_STATEMENT_WRITES: bool = true;
    const TRUST_IDLE: Option<Duration> = Some(TRUST_IDLE);
    // One statement: the outer SELECT does not see the CTE's insert, so `others` counts
    // only earlier sightings of other values.
    const SIGHTING: Option<&'static str> = Some(
        "WITH ins AS (
             INSERT INTO client_sightings (client_id, kind, value, first_seen)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM ins) AS inserted,
                EXISTS (SELECT 1 FROM client_sightings
                        WHERE client_id = $1 AND kind = $2 AND value <> $3) AS others",
    );

    fn conn<'c>(conn: &'c mut PgConnection) -> impl Executor<'c, Database = Self> + 'c {
        conn
    }

    fn pool<'p>(pool: &'p PgPool) -> impl Executor<'p, Database = Self> + 'p {
        pool
    }

    fn affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn migrate(pool: &PgPool) -> StoreResult<()> {
        sqlx::migrate!("../../migrations/postgres")
            .run(pool)
            .await?;
        Ok(())
    }

    async fn listen(pool: &Pool<Self>, signal: Arc<tokio::sync::Notify>) -> StoreResult<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .or_store("revocation feed")?;
        listener
            .listen(REVOCATION_CHANNEL)
            .await
            .or_store("revocation feed")?;
        tokio::spawn(async move {
            loop {
                // recv() reconnects by itself after a lost connection; a lost
                // notification is covered by the listeners' periodic catch-up.
                if let Err(e) = listener.recv().await {
                    tracing::warn!(error = %e, "revocation listener interrupted");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                signal.notify_one();
            }
        });
        Ok(())
    }

    fn push_network(sql: &mut QueryBuilder<Self>, net: ipnet::IpNet) -> bool {
        sql.push(" AND source_ip IS NOT NULL AND source_ip::inet <<= ");
        Self::push_arg(sql, net.to_string());
        sql.push("::cidr");
        true
    }

    fn json_text(column: &str, path: &[&str]) -> String {
        let mut expr = column.to_owned();
        for (i, key) in path.iter().enumerate() {
            let op = if i + 1 == path.len() { "->>" } else { "->" };
            expr = format!("({expr} {op} '{key}')");
        }
        expr
    }

    fn push_before(sql: &mut QueryBuilder<Self>, at: OffsetDateTime, id: Uuid) {
        sql.push(" AND (occurred_at, id) < (");
        Self::push_arg(sql, Ts(at));
        sql.push(", ");
        Self::push_arg(sql, id);
        sql.push(")");
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<Postgres>>::decode(value).map(Ts)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;
    use sqlx::pool::PoolConnection;

    use super::*;
    use crate::testing::TestDb;

    /// The server process behind `conn`.
    async fn backend_pid(conn: &mut PoolConnection<Postgres>) -> StoreResult<i32> {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .or_store("database")
    }

    /// Has the server drop the connection of backend `pid`, then waits until a
    /// connection idle that long is no longer trusted without a ping.
    async fn drop_while_idle(url: &str, pid: i32) {
        let mut admin = PgConnection::connect(url).await.unwrap();
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(terminated);
        tokio::time::sleep(TRUST_IDLE + Duration::from_millis(250)).await;
    }

    /// A connection the server dropped while it sat idle in the pool is pinged on its
    /// next acquire (it has been idle past [`TRUST_IDLE`]) and replaced: no query fails.
    #[tokio::test]
    async fn a_connection_dropped_while_idle_is_replaced() {
        let db = TestDb::new(Backend::Postgres).await;
        let store = PgStore::connect(&db.url).await.unwrap();
        let backend_pid = "SELECT pg_backend_pid()";
        let first: i32 = sqlx::query_scalar(backend_pid)
            .fetch_one(store.pool())
            .await
            .unwrap();
        drop_while_idle(&db.url, first).await;
        let next: i32 = sqlx::query_scalar(backend_pid)
            .fetch_one(store.pool())
            .await
            .expect("the dead connection is replaced, not handed out");
        assert_ne!(next, first);
    }

    /// The same for a connection reads keep out of the pool ([`Dialect::KEPT_READERS`]):
    /// idle past [`TRUST_IDLE`], it is pinged before its next read and replaced if the
    /// server dropped it. No read fails.
    #[tokio::test]
    async fn a_kept_reader_dropped_while_idle_is_replaced() {
        let db = TestDb::new(Backend::Postgres).await;
        let store = PgStore::connect(&db.url).await.unwrap();
        let backend_pid = || store.on_read_conn(backend_pid);
        let first = backend_pid().await.unwrap();
        assert_eq!(
            backend_pid().await.unwrap(),
            first,
            "sequential reads keep their connection"
        );
        drop_while_idle(&db.url, first).await;
        let next = backend_pid()
            .await
            .expect("the dead connection is replaced, not used");
        assert_ne!(next, first);
    }

    /// The same for the connection the audit group commit keeps: idle past
    /// [`TRUST_IDLE`], it is pinged before the next batch and replaced if the server
    /// dropped it. No batch fails.
    #[tokio::test]
    async fn the_kept_audit_writer_dropped_while_idle_is_replaced() {
        let db = TestDb::new(Backend::Postgres).await;
        let store = PgStore::connect(&db.url).await.unwrap();
        crate::Store::migrate(&store).await.unwrap();
        let backend_pid = || store.on_write_conn(backend_pid);
        let first = backend_pid().await.unwrap();
        assert_eq!(
            backend_pid().await.unwrap(),
            first,
            "batches keep their connection"
        );
        drop_while_idle(&db.url, first).await;
        let event = crate::contract_tests::audit::event(
            "token.issued",
            "client",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        crate::AuditStore::append_audit_events(&store, std::slice::from_ref(&event))
            .await
            .expect("the dead connection is replaced, not used");
        assert_ne!(backend_pid().await.unwrap(), first);
    }

    /// Mayfly's sessions start the kernel's writeback early ([`FLUSH_AFTER`]), unless
    /// a value was chosen elsewhere: here, in the URL.
    #[tokio::test]
    async fn sessions_flush_after_256k_unless_configured() {
        let db = TestDb::new(Backend::Postgres).await;
        let show = async |url: &str| -> String {
            let store = PgStore::connect(url).await.unwrap();
            sqlx::query_scalar("SHOW backend_flush_after")
                .fetch_one(store.pool())
                .await
                .unwrap()
        };
        assert_eq!(show(&db.url).await, "256kB");
        let sep = if db.url.contains('?') { '&' } else { '?' };
        let chosen = format!("{}{sep}options=-c%20backend_flush_after%3D64kB", db.url);
        assert_eq!(show(&chosen).await, "64kB");
    }
}
