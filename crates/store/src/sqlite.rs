//! The SQLite store: the embedded default, one process per database file. Its body is
//! the generic SQL store (`sql/`); this file holds what only SQLite does.
//!
//! Times are stored as INTEGER microseconds since the Unix epoch so that SQL comparisons
//! are numeric; the WAL journal with `synchronous = FULL` makes a commit durable. Write
//! transactions begin `IMMEDIATE`: they take the file's write lock up front, which also
//! serializes key changes and revocations across processes sharing the file.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Executor, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::SqlxResultExt;
use crate::sql::{Binds, Dialect, SqlStore, Ts};
use crate::{Backend, StoreError, StoreResult};

/// A SQLite-backed [`Store`](crate::Store).
pub type SqliteStore = SqlStore<Sqlite>;

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite:` URL names.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a malformed URL; a database error when the file
    /// cannot be opened.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::InvalidUrl)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Statement journals (a multi-row statement's undo inside a transaction)
            // otherwise spill to a temporary file past 64 KiB: an open, an unlink and a
            // close per batch. They are never needed after a crash, so memory loses
            // nothing durable.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections())
            // An in-process connection cannot go stale the way a socket can; the check
            // would cost a trip to its worker thread on every acquire.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .or_store("database")?;
        Ok(Self::new(pool))
    }
}

/// The writer, the kept readers ([`Dialect::KEPT_READERS`]) and one pooled connection per
/// core, at least two. SQLite reads run in process on the CPU, so connections beyond the
/// cores only add memory: each is a thread with its own page cache, schema and prepared
/// statements, about 1.4 MB, and once a burst has opened one, reads in turn keep it open.
fn max_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    u32::try_from(1 + Sqlite::KEPT_READERS + cores.clamp(2, 16)).unwrap_or(8)
}

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const ONE_WRITER: bool = true;
    /// A read on a pooled connection costs two trips to its thread: the query, and
    /// sqlx's ping when the connection returns to the pool.
    const KEPT_READERS: usize = 2;
    const XACT_LOCK: Option<&'static str> = None;
    /// One serving process per SQLite file: it hears its own revocations; other
    /// processes' (the CLI) are found by polling.
    const NOTIFY: Option<&'static str> = None;
    /// Far below SQLite's limit on bound parameters.
    const AUDIT_CHUNK: usize = 64;
    /// SQLite has no data-modifying `WITH`: a rotation batch is one script instead.
    const ONE_STATEMENT_WRITES: bool = false;
    /// An in-process connection cannot go stale.
    const TRUST_IDLE: Option<Duration> = None;
    const SIGHTING: Option<&'static str> = None;

    fn conn<'c>(conn: &'c mut SqliteConnection) -> impl Executor<'c, Database = Self> + 'c {
        conn
    }

    fn pool<'p>(pool: &'p SqlitePool) -> impl Executor<'p, Database = Self> + 'p {
        pool
    }

    fn affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
        sqlx::migrate!("../../migrations/sqlite").run(pool).await?;
        Ok(())
    }

    async fn listen(_: &SqlitePool, _: Arc<tokio::sync::Notify>) -> StoreResult<()> {
        Ok(())
    }

    /// SQLite has no inet type: let it discard most rows itself (an IPv4 network lies
    /// within its whole-octet prefix, "10.17.%" for 10.17.0.0/16 or 10.17.128.0/17);
    /// the caller checks the rest.
    fn push_network(sql: &mut QueryBuilder<Self>, net: ipnet::IpNet) -> bool {
        sql.push(" AND source_ip IS NOT NULL");
        if let Some(prefix) = ipv4_text_prefix(net) {
            sql.push(" AND source_ip LIKE ");
            Self::push_arg(sql, prefix);
        }
        false
    }

    fn json_text(column: &str, path: &[&str]) -> String {
        format!("json_extract({column}, '$.{}')", path.join("."))
    }

    fn push_before(sql: &mut QueryBuilder<Self>, at: OffsetDateTime, id: Uuid) {
        sql.push(" AND (occurred_at < ");
        Self::push_arg(sql, Ts(at));
        sql.push(" OR (occurred_at = ");
        Self::push_arg(sql, Ts(at));
        sql.push(" AND id < ");
        Self::push_arg(sql, id);
        sql.push("))");
    }
}

/// The text every address of an IPv4 network starts with, as a LIKE pattern; `None`
/// for IPv6 (its text form has no fixed prefix) or a network shorter than /8.
fn ipv4_text_prefix(net: ipnet::IpNet) -> Option<String> {
    let ipnet::IpNet::V4(net) = net else {
        return None;
    };
    let octets = usize::from(net.prefix_len() / 8);
    if octets == 0 {
        return None;
    }
    let mut prefix: String = net.network().octets()[..octets.min(4)]
        .iter()
        .map(|o| format!("{o}."))
        .collect();
    if octets == 4 {
        // A whole address: exactly it.
        prefix.pop();
        return Some(prefix);
    }
    prefix.push('%');
    Some(prefix)
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        // i64 microseconds cover ±292,000 years; the cast cannot truncate in practice.
        let micros = i64::try_from(self.0.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
        <i64 as Encode<Sqlite>>::encode(micros, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let us = <i64 as Decode<Sqlite>>::decode(value)?;
        Ok(Ts(OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(us) * 1000,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::{SqliteStore, ipv4_text_prefix};
    use crate::testing::TestDb;
    use crate::{AudienceStore as _, Backend, Store as _};

    /// A multi-row statement's undo (its statement journal) stays in memory instead of
    /// a temporary file opened, written and unlinked by every batch that spills it.
    #[tokio::test]
    async fn statement_journals_stay_in_memory() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = SqliteStore::connect(&db.url).await.unwrap();
        for _ in 0..3 {
            let mode: i64 = sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(mode, 2, "temp_store = MEMORY on every connection");
        }
    }

    /// Reads keep their connections: sequential reads use one kept reader, which never
    /// goes back to the pool (where sqlx would ping it on every return).
    #[tokio::test]
    async fn reads_keep_their_connection_out_of_the_pool() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = SqliteStore::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        for _ in 0..5 {
            let none = store.audience_by_uri("https://nowhere").await.unwrap();
            assert_eq!(none, None);
        }
        let pool = store.pool();
        assert_eq!(
            pool.size() as usize - pool.num_idle(),
            1,
            "one connection kept out of the pool"
        );
    }

    #[test]
    fn ipv4_networks_become_text_prefixes() {
        let prefix = |net: &str| ipv4_text_prefix(net.parse().unwrap());
        assert_eq!(prefix("10.0.0.0/8").as_deref(), Some("10.%"));
        assert_eq!(prefix("10.17.0.0/16").as_deref(), Some("10.17.%"));
        assert_eq!(prefix("10.17.128.0/17").as_deref(), Some("10.17.%"));
        assert_eq!(prefix("192.0.2.0/24").as_deref(), Some("192.0.2.%"));
        assert_eq!(prefix("192.0.2.7/32").as_deref(), Some("192.0.2.7"));
        assert_eq!(prefix("0.0.0.0/0"), None);
        assert_eq!(prefix("2001:db8::/32"), None);
    }
}
