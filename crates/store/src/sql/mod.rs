//! The SQL store body, written once and generic over a [`Dialect`]: the sqlx
//! [`Database`] of a backend (`sqlx::Postgres` or `sqlx::Sqlite`) with the few things
//! that truly differ between them (write-transaction begin, locks, the revocation
//! signal, audit batch size, the IP filter, JSON extraction, time encoding,
//! migrations).
//!
//! Rust does not carry `where` clauses of a trait to its users, so "`Uuid` binds on this
//! database" cannot be stated once as `Uuid: Encode<DB>`. It is stated as a supertrait of
//! the dialect instead ([`Binds<Uuid>`](Binds), [`Gets<Uuid>`](Gets)), which the
//! compiler does carry; [`QueryExt::arg`] and [`RowExt::col`] then bind and read any
//! listed type in generic code. Blanket impls make every sqlx type qualify.

mod access;
mod audiences;
mod audit;
mod clients;
mod federation;
mod grants;
mod keys;
mod refresh;
mod replay;
mod revocations;
mod sightings;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row,
    Transaction, Type,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::SqlxResultExt;
use crate::{Backend, ChangeEffects};
use crate::{Store, StoreError, StoreResult};

/// A time as the backend stores it: `timestamptz` on Postgres, INTEGER microseconds
/// since the Unix epoch on SQLite (so that SQL comparisons are numeric there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts(pub OffsetDateTime);

/// A query with its arguments bound.
type Q<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// `DB` can bind a `T` (any type sqlx encodes for it).
pub trait Binds<T>: Database {
    /// Binds `value` as the query's next parameter.
    fn bind_arg(query: Q<'_, Self>, value: T) -> Q<'_, Self>;
    /// Pushes `value` as a parameter of a built query.
    fn push_arg(builder: &mut QueryBuilder<Self>, value: T);
}

impl<T, DB: Database> Binds<T> for DB
where
    T: for<'a> Encode<'a, DB> + Type<DB>,
{
    fn bind_arg(query: Q<'_, Self>, value: T) -> Q<'_, Self> {
        query.bind(value)
    }

    fn push_arg(builder: &mut QueryBuilder<Self>, value: T) {
        builder.push_bind(value);
    }
}

/// `DB` can read a `T` out of a column (any type sqlx decodes for it).
pub trait Gets<T>: Database {
    /// The value of column `name`.
    fn get_col(row: &Self::Row, name: &str) -> Result<T, sqlx::Error>;
}

impl<T, DB: Database> Gets<T> for DB
where
    T: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    fn get_col(row: &Self::Row, name: &str) -> Result<T, sqlx::Error> {
        row.try_get(name)
    }
}

/// Binding in generic code: `query(..).arg(x)` for every type the dialect [`Binds`].
pub trait QueryExt<DB: Database>: Sized {
    /// Binds `value` as the next parameter.
    fn arg<T>(self, value: T) -> Self
    where
        DB: Binds<T>;
}

impl<DB: Database> QueryExt<DB> for Q<'_, DB> {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Binds<T>,
    {
        DB::bind_arg(self, value)
    }
}

/// Reading in generic code: `row.col("id")` for every type the dialect [`Gets`].
pub trait RowExt: Row<Database: Dialect> {
    /// The value of column `name`; a value that does not decode is a database error.
    fn col<T>(&self, name: &str) -> StoreResult<T>
    where
        Self::Database: Gets<T>;
}

impl<R: Row<Database: Dialect>> RowExt for R {
    fn col<T>(&self, name: &str) -> StoreResult<T>
    where
        R::Database: Gets<T>,
    {
        <R::Database as Gets<T>>::get_col(self, name).map_err(StoreError::Database)
    }
}

/// What differs between the SQL backends; everything else is written once in this
/// module. Implemented by `sqlx::Postgres` (postgres.rs) and `sqlx::Sqlite` (sqlite.rs).
pub trait Dialect:
    Database<Arguments: IntoArguments<Self>>
    + Binds<Uuid>
    + Binds<Option<Uuid>>
    + for<'a> Binds<&'a str>
    + for<'a> Binds<&'a String>
    + for<'a> Binds<&'a Option<String>>
    + Binds<String>
    + Binds<Option<String>>
    + Binds<Option<&'static str>>
    + Binds<i64>
    + Binds<Option<i64>>
    + Binds<i32>
    + Binds<bool>
    + Binds<Option<bool>>
    + for<'a> Binds<&'a [u8]>
    + Binds<Vec<u8>>
    + for<'a> Binds<&'a Vec<u8>>
    + Binds<Ts>
    + Binds<Option<Ts>>
    + for<'a> Binds<Json<&'a Vec<String>>>
    + for<'a> Binds<Json<&'a Vec<Uuid>>>
    + for<'a> Binds<Json<&'a serde_json::Value>>
    + Gets<Uuid>
    + Gets<Option<Uuid>>
    + Gets<String>
    + Gets<Option<String>>
    + Gets<i64>
    + Gets<Option<i64>>
    + Gets<i32>
    + Gets<bool>
    + Gets<Vec<u8>>
    + Gets<Ts>
    + Gets<Option<Ts>>
    + Gets<Json<Vec<String>>>
    + Gets<Json<Vec<Uuid>>>
    + Gets<Json<serde_json::Value>>
{
    /// For logs and metrics.
    const BACKEND: Backend;
    /// How a write transaction begins, when not with a plain `BEGIN` (SQLite: `BEGIN
    /// IMMEDIATE`, so it takes the write lock up front instead of failing on upgrade).
    const BEGIN_WRITE: Option<&'static str>;
    /// Whether the database takes one writer at a time (SQLite): this process's writers
    /// then take turns in memory before they write (see [`SqlStore::write_turn`]).
    const ONE_WRITER: bool;
    /// How many connections reads keep out of the pool (see [`Kept`]); a read finding
    /// them all busy takes a pooled one.
    const KEPT_READERS: usize;
    /// A transaction-scoped lock on `$1` (an i64 key) serializing key changes and
    /// revocation inserts across processes; `None` when [`Self::BEGIN_WRITE`] already
    /// serializes every writer.
    const XACT_LOCK: Option<&'static str>;
    /// Announces a revocation (`$1` channel, `$2` seq) to other processes on commit;
    /// `None` when only this store object hears its revocations (raised after commit).
    const NOTIFY: Option<&'static str>;
    /// Audit events per INSERT (14 parameters each, within the backend's limit).
    const AUDIT_CHUNK: usize;
    /// How long a connection may sit idle and still be used without a ping (the server
    /// or the network may drop one idle longer); `None` when it cannot go stale.
    const TRUST_IDLE: Option<std::time::Duration>;
    /// Whether one statement may make several writes (Postgres's data-modifying
    /// `WITH`): a rotation batch is then one statement in autocommit, one round trip
    /// where a transaction takes five. Where it may not, the batch is one script of
    /// statements with parameters (SQLite runs it in one trip to its thread).
    const ONE_STATEMENT_WRITES: bool;

    /// A connection (or transaction) as an executor.
    fn conn<'c>(conn: &'c mut Self::Connection) -> impl Executor<'c, Database = Self> + 'c;
    /// The pool as an executor.
    fn pool<'p>(pool: &'p Pool<Self>) -> impl Executor<'p, Database = Self> + 'p;
    /// Rows a statement changed.
    fn affected(done: &Self::QueryResult) -> u64;
    /// Applies pending migrations.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Makes `signal` hear revocations recorded by any process, if the backend can.
    fn listen(
        pool: &Pool<Self>,
        signal: Arc<tokio::sync::Notify>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Pushes ` AND <source_ip within net>`; `true` when that is exact, `false` when it
    /// only narrows the rows and the caller must filter the rest.
    fn push_network(sql: &mut QueryBuilder<Self>, net: ipnet::IpNet) -> bool;
    /// The text at `path` (object keys, fixed by the caller) inside the JSON `column`,
    /// as an SQL expression; NULL where there is none. Postgres:
    /// `column -> 'a' ->> 'b'`, SQLite: `json_extract(column, '$.a.b')`.
    fn json_text(column: &str, path: &[&str]) -> String;
    /// Pushes ` AND (occurred_at, id) < (at, id)`.
    fn push_before(sql: &mut QueryBuilder<Self>, at: OffsetDateTime, id: Uuid);
    /// The sighting statement when one statement can insert and look (Postgres: a
    /// writable CTE); `None` runs the insert and the look in one write transaction.
    const SIGHTING: Option<&'static str>;
}

/// Advisory lock key serializing revocation inserts ("mayflyr").
const REVOCATION_LOCK: i64 = 0x006d_6179_666c_7972;
/// Advisory lock key serializing signing-key changes across replicas ("mayflyk").
const KEY_LOCK: i64 = 0x006d_6179_666c_796b;
/// `NOTIFY` channel announcing new revocations.
pub const REVOCATION_CHANNEL: &str = "mayfly_revocations";

/// A [`Store`] on a SQL database; [`crate::PgStore`] and [`crate::SqliteStore`] name its
/// two kinds.
#[derive(Debug)]
pub struct SqlStore<DB: Dialect> {
    pool: Pool<DB>,
    /// Writers of this process take turns here first where the database has one writer
    /// (see [`Dialect::ONE_WRITER`]).
    write_turn: Option<Arc<tokio::sync::Mutex<Kept<DB>>>>,
    /// The connection the audit group commit writes on, kept from batch to batch: the
    /// turn to write itself where there is one, else a connection of its own.
    audit_writer: Arc<tokio::sync::Mutex<Kept<DB>>>,
    /// Connections kept for reads ([`Dialect::KEPT_READERS`]).
    readers: Arc<[tokio::sync::Mutex<Kept<DB>>]>,
    changes: Arc<AtomicU64>,
    /// Raised when a revocation is recorded (see [`Dialect::NOTIFY`]).
    signal: Arc<tokio::sync::Notify>,
    /// Whether [`Dialect::listen`] runs for `signal`.
    listening: Arc<tokio::sync::Mutex<bool>>,
}

/// A connection kept out of the pool between uses. sqlx pings a connection each time it
/// returns to the pool (for SQLite one more trip to the connection's thread); a kept one
/// skips that. The audit group commit writes on one (on SQLite the one the turn to
/// write holds, whose page cache also stays warm, where a pooled connection finds its
/// cache stale after each commit of another connection and reads the pages again: the
/// audit table's and indexes' newest pages, every batch). The kept readers are the
/// others (see [`Dialect::KEPT_READERS`]).
pub(crate) struct Kept<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    /// When the connection was last used.
    used: std::time::Instant,
}

impl<DB: Database> Default for Kept<DB> {
    fn default() -> Self {
        Self {
            conn: None,
            used: std::time::Instant::now(),
        }
    }
}

impl<DB: Database> std::fmt::Debug for Kept<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").finish_non_exhaustive()
    }
}

impl<DB: Dialect> Kept<DB> {
    /// The connection, taken from `pool` the first time (or after a failure). One idle
    /// past [`Dialect::TRUST_IDLE`] is pinged first, as the pool pings those it hands
    /// out, and replaced if it is gone.
    async fn conn(&mut self, pool: &Pool<DB>) -> StoreResult<&mut PoolConnection<DB>> {
        let stale = DB::TRUST_IDLE.is_some_and(|trust| self.used.elapsed() >= trust);
        let conn = match self.conn.take() {
            Some(mut conn) if stale => match sqlx::Connection::ping(&mut *conn).await {
                Ok(()) => conn,
                Err(_) => {
                    conn.close_on_drop();
                    drop(conn);
                    pool.acquire().await.or_store("database")?
                }
            },
            Some(conn) => conn,
            None => pool.acquire().await.or_store("database")?,
        };
        Ok(self.conn.insert(conn))
    }

    /// Lets the connection go after `result` failed with the database unavailable: the
    /// next use takes a fresh one.
    fn settle<T>(&mut self, result: &StoreResult<T>) {
        if result.as_ref().is_err_and(StoreError::is_unavailable) {
            self.conn = None;
        }
    }

    /// Runs `f` on `kept`'s connection, or on a pooled one when there is none to use.
    pub(crate) async fn run<T>(
        kept: Option<&mut Self>,
        pool: &Pool<DB>,
        entity: &'static str,
        f: impl AsyncFnOnce(&mut PoolConnection<DB>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let Some(kept) = kept else {
            let mut conn = pool.acquire().await.or_store(entity)?;
            return f(&mut conn).await;
        };
        let result = f(kept.conn(pool).await?).await;
        kept.used = std::time::Instant::now();
        kept.settle(&result);
        result
    }
}

impl<DB: Dialect> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            write_turn: self.write_turn.clone(),
            audit_writer: self.audit_writer.clone(),
            readers: self.readers.clone(),
            changes: self.changes.clone(),
            signal: self.signal.clone(),
            listening: self.listening.clone(),
        }
    }
}

/// A write transaction, holding this process's turn to write until it ends.
pub(crate) struct WriteTx<DB: Dialect> {
    tx: Transaction<'static, DB>,
    _turn: Option<tokio::sync::OwnedMutexGuard<Kept<DB>>>,
}

impl<DB: Dialect> WriteTx<DB> {
    /// Commits, then gives the turn to the next writer.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: Dialect> std::ops::Deref for WriteTx<DB> {
    type Target = Transaction<'static, DB>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: Dialect> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl<DB: Dialect> SqlStore<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        let audit_writer = Arc::default();
        Self {
            pool,
            write_turn: DB::ONE_WRITER.then(|| Arc::clone(&audit_writer)),
            audit_writer,
            readers: (0..DB::KEPT_READERS).map(|_| Default::default()).collect(),
            changes: Arc::default(),
            signal: Arc::default(),
            listening: Arc::default(),
        }
    }

    /// The pool, for tests and tools in this crate.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The pool as an executor.
    fn db(&self) -> impl Executor<'_, Database = DB> + '_ {
        DB::pool(&self.pool)
    }

    /// Runs the read `query` on the pool; the row it finds, if any, read by `read`.
    /// A write never comes here: it would skip this process's turn to write.
    async fn optional<T>(
        &self,
        query: Q<'_, DB>,
        read: impl Fn(&DB::Row) -> StoreResult<T> + Send,
        entity: &'static str,
    ) -> StoreResult<Option<T>> {
        let row = self
            .on_read_conn(async |conn| query.fetch_optional(DB::conn(conn)).await.or_store(entity))
            .await?;
        row.as_ref().map(read).transpose()
    }

    /// Runs the read `query` on the pool; every row it finds, read by `read`. A write
    /// that returns rows goes to [`Self::write_rows`].
    async fn all<T>(
        &self,
        query: Q<'_, DB>,
        read: impl Fn(&DB::Row) -> StoreResult<T> + Send,
        entity: &'static str,
    ) -> StoreResult<Vec<T>> {
        let rows = self
            .on_read_conn(async |conn| query.fetch_all(DB::conn(conn)).await.or_store(entity))
            .await?;
        rows.iter().map(read).collect()
    }

    /// Runs `read` on a free kept reader, else on a pooled connection.
    pub(crate) async fn on_read_conn<T>(
        &self,
        read: impl AsyncFnOnce(&mut PoolConnection<DB>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut free = self.readers.iter().find_map(|slot| slot.try_lock().ok());
        Kept::run(free.as_deref_mut(), &self.pool, "database", read).await
    }

    /// Runs the write `query` (`… RETURNING`) in this process's turn to write; every
    /// row it returns, read by `read`.
    async fn write_rows<T>(
        &self,
        query: Q<'_, DB>,
        read: impl Fn(&DB::Row) -> StoreResult<T> + Send,
        entity: &'static str,
    ) -> StoreResult<Vec<T>> {
        let _turn = self.write_turn().await;
        let rows = query.fetch_all(self.db()).await.or_store(entity)?;
        rows.iter().map(read).collect()
    }

    /// Runs the write `query` on the pool, in this process's turn to write; how many
    /// rows it changed.
    async fn exec(&self, query: Q<'_, DB>, entity: &'static str) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let done = query.execute(self.db()).await.or_store(entity)?;
        Ok(DB::affected(&done))
    }

    /// This process's turn to write, where the database has one writer: held until the
    /// write commits. Without it, concurrent writers of one SQLite file find its lock
    /// taken and retry on SQLite's busy handler, which sleeps for milliseconds between
    /// attempts (refresh p99 was 350 ms at 32 connections); with it they queue in order.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<Kept<DB>>> {
        match &self.write_turn {
            Some(turn) => Some(turn.clone().lock_owned().await),
            None => None,
        }
    }

    /// Runs `query` on `conn`; how many rows it changed.
    async fn run(
        conn: &mut DB::Connection,
        query: Q<'_, DB>,
        entity: &'static str,
    ) -> StoreResult<u64> {
        let done = query.execute(DB::conn(conn)).await.or_store(entity)?;
        Ok(DB::affected(&done))
    }

    /// Begins a write transaction (in this process's turn to write, where that applies).
    async fn begin(&self, entity: &'static str) -> StoreResult<WriteTx<DB>> {
        let turn = self.write_turn().await;
        let tx = match DB::BEGIN_WRITE {
            Some(begin) => self.pool.begin_with(begin).await,
            None => self.pool.begin().await,
        }
        .or_store(entity)?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// After a commit that recorded a revocation: raises the local signal where no
    /// `NOTIFY` went out with the commit.
    fn revoked(&self) {
        if DB::NOTIFY.is_none() {
            self.signal.notify_one();
        }
    }

    /// An admin change of one row: `query` runs in a write transaction committed with
    /// `effects`; `NotFound(entity)`, and nothing stored, when it changes no row.
    async fn change_row(
        &self,
        query: Q<'_, DB>,
        effects: &ChangeEffects,
        entity: &'static str,
        issuance: bool,
    ) -> StoreResult<()> {
        let mut tx = self.begin(entity).await?;
        if Self::run(&mut tx, query, entity).await? == 0 {
            return Err(StoreError::NotFound(entity));
        }
        self.commit_change(tx, effects, entity, issuance).await
    }

    /// An admin change returning its row (read by `read`), in a write transaction
    /// committed with `effects`; `None`, and nothing stored, when it returns none.
    async fn change_returning<T: Send>(
        &self,
        query: Q<'_, DB>,
        read: impl Fn(&DB::Row) -> StoreResult<T> + Send,
        effects: &ChangeEffects,
        entity: &'static str,
        issuance: bool,
    ) -> StoreResult<Option<T>> {
        let mut tx = self.begin(entity).await?;
        let row = query
            .fetch_optional(DB::conn(&mut tx))
            .await
            .or_store(entity)?;
        let Some(row) = row else { return Ok(None) };
        let record = read(&row)?;
        self.commit_change(tx, effects, entity, issuance).await?;
        Ok(Some(record))
    }

    /// Commits an admin change with its audit events and revocation, then counts it
    /// (`issuance`: a change to issuance data, see [`Store::local_changes`]) and
    /// announces the revocation.
    async fn commit_change(
        &self,
        mut tx: WriteTx<DB>,
        effects: &ChangeEffects,
        entity: &'static str,
        issuance: bool,
    ) -> StoreResult<()> {
        audit::insert_audit_events::<DB, _>(&mut tx, &effects.audit).await?;
        if let Some(revocation) = &effects.revocation {
            revocations::insert_revocation::<DB>(&mut tx, revocation).await?;
        }
        tx.commit().await.or_store(entity)?;
        if issuance {
            self.changes.fetch_add(1, Ordering::Release);
        }
        if effects.revocation.is_some() {
            self.revoked();
        }
        Ok(())
    }
}

/// Takes the transaction lock `key` where the dialect has one.
async fn lock<DB: Dialect>(
    conn: &mut DB::Connection,
    key: i64,
    entity: &'static str,
) -> StoreResult<()> {
    if let Some(sql) = DB::XACT_LOCK {
        SqlStore::<DB>::run(conn, sqlx::query(sql).arg(key), entity).await?;
    }
    Ok(())
}

/// Maps a foreign-key failure of an insert (`NotFound`) to `NotFound(parent)`.
fn parent_missing(parent: &'static str) -> impl Fn(StoreError) -> StoreError {
    move |e| match e {
        StoreError::NotFound(_) => StoreError::NotFound(parent),
        other => other,
    }
}

#[async_trait]
impl<DB: Dialect> Store for SqlStore<DB> {
    async fn migrate(&self) -> StoreResult<()> {
        DB::migrate(&self.pool).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.exec(sqlx::query("SELECT 1"), "database")
            .await
            .map(drop)
    }

    async fn revision(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT value FROM revision WHERE id = 1")
            .fetch_one(self.db())
            .await
            .or_store("revision")?;
        row.col("value")
    }

    fn local_changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    fn backend(&self) -> Backend {
        DB::BACKEND
    }
}
