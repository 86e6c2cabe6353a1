//! The two schemas stay in step: after migrations both backends have the same tables,
//! columns, nullability and named indexes, up to the known type differences.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use sqlx::Row;
use time::Duration;
use uuid::Uuid;

use crate::sql::{Binds, Dialect, QueryExt as _, SqlStore, Ts};
use crate::testing::TestDb;
use crate::{
    AuditQuery, AuditStore as _, Backend, PgStore, RefreshKey, RefreshStore as _, SqliteStore,
    Store,
};

/// `(table, column)` → (type as SQLite stores it, NOT NULL).
type Columns = BTreeMap<(String, String), (String, bool)>;
/// `(table, index)` → its columns.
type Indexes = BTreeMap<(String, String), Vec<String>>;

/// The SQLite storage class of a Postgres type: times are INTEGER microseconds, ids
/// 16-byte BLOBs, JSON TEXT, booleans INTEGER.
fn sqlite_type(pg: &str) -> &'static str {
    match pg {
        "uuid" | "bytea" => "BLOB",
        "timestamp with time zone" | "boolean" | "bigint" | "integer" | "smallint" => "INTEGER",
        "text" | "jsonb" => "TEXT",
        _ => "UNKNOWN",
    }
}

/// Columns SQLite keeps nullable only because `ALTER TABLE ADD COLUMN` cannot add a
/// NOT NULL column without a default; the store writes them on every row.
const NULLABLE_ON_SQLITE: &[(&str, &str)] = &[("signing_keys", "published_at")];

/// Audit search indexes only Postgres keeps: every issuance writes an audit event and
/// SQLite has one writer, so the embedded store dropped them (sqlite/0007) and does
/// not add the external identity one (0014).
const POSTGRES_ONLY_INDEXES: &[&str] = &[
    "audit_events_client_idx",
    "audit_events_jti_idx",
    "audit_events_external_idx",
];

async fn postgres_schema(store: &PgStore) -> (Columns, Indexes) {
    let rows = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, is_nullable = 'NO' AS nn
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let columns = rows
        .iter()
        .map(|r| {
            let ty: String = r.get("ty");
            (
                (r.get("t"), r.get("c")),
                (sqlite_type(&ty).to_owned(), r.get("nn")),
            )
        })
        .collect();
    let rows = sqlx::query(
        "SELECT t.relname::text AS t, i.relname::text AS i,
                COALESCE(a.attname::text, '(expression)') AS c
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
         LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
         WHERE n.nspname = 'public' AND NOT x.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
           AND t.relname <> '_sqlx_migrations'
         ORDER BY 1, 2, k.ord",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    (
        columns,
        indexes(rows.iter().map(|r| (r.get("t"), r.get("i"), r.get("c")))),
    )
}

async fn sqlite_schema(store: &SqliteStore) -> (Columns, Indexes) {
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c, p.type AS ty, p.\"notnull\" OR p.pk > 0 AS nn
         FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let columns = rows
        .iter()
        .map(|r| {
            let (t, c): (String, String) = (r.get("t"), r.get("c"));
            let nn: bool = r.get("nn");
            let nn = nn || NULLABLE_ON_SQLITE.contains(&(t.as_str(), c.as_str()));
            ((t, c), (r.get("ty"), nn))
        })
        .collect();
    // Named indexes only: SQLite's automatic ones back PRIMARY KEY and UNIQUE, which
    // the columns' constraints cover.
    let rows = sqlx::query(
        "SELECT m.tbl_name AS t, m.name AS i, COALESCE(x.name, '(expression)') AS c
         FROM sqlite_master m JOIN pragma_index_info(m.name) x
         WHERE m.type = 'index' AND m.sql IS NOT NULL
         ORDER BY 1, 2, x.seqno",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    (
        columns,
        indexes(rows.iter().map(|r| (r.get("t"), r.get("i"), r.get("c")))),
    )
}

fn indexes(rows: impl Iterator<Item = (String, String, String)>) -> Indexes {
    let mut out = Indexes::new();
    for (table, index, column) in rows {
        out.entry((table, index)).or_default().push(column);
    }
    out
}

/// Lists what only one side has, or has differently.
fn differences<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    pg: &BTreeMap<K, V>,
    lite: &BTreeMap<K, V>,
) -> Vec<String> {
    let keys: BTreeSet<&K> = pg.keys().chain(lite.keys()).collect();
    keys.into_iter()
        .filter(|k| pg.get(k) != lite.get(k))
        .map(|k| format!("{k:?}: postgres {:?}, sqlite {:?}", pg.get(k), lite.get(k)))
        .collect()
}

#[tokio::test]
async fn both_schemas_match_after_migrations() {
    let (pg_db, lite_db) = (
        TestDb::new(Backend::Postgres).await,
        TestDb::new(Backend::Sqlite).await,
    );
    let pg = PgStore::connect(&pg_db.url).await.unwrap();
    let lite = SqliteStore::connect(&lite_db.url).await.unwrap();
    pg.migrate().await.unwrap();
    lite.migrate().await.unwrap();
    let (pg_columns, mut pg_indexes) = postgres_schema(&pg).await;
    pg_indexes.retain(|(_, index), _| !POSTGRES_ONLY_INDEXES.contains(&index.as_str()));
    let (lite_columns, lite_indexes) = sqlite_schema(&lite).await;
    assert!(pg_columns.len() > 50, "read the Postgres columns");
    let mut diff = differences(&pg_columns, &lite_columns);
    diff.extend(differences(&pg_indexes, &lite_indexes));
    assert!(diff.is_empty(), "schemas differ:\n{}", diff.join("\n"));
}

/// A refresh token minted before 0015 (looked up by its digest then) is found after it
/// by the selector the server derives for the old form: the first 16 bytes of the
/// digest. Both stores: migrate to 0014, store a token the old way, migrate the rest.
#[tokio::test]
async fn refresh_tokens_minted_before_selectors_survive_their_migration() {
    let db = TestDb::new(Backend::Sqlite).await;
    let lite = SqliteStore::connect(&db.url).await.unwrap();
    let before = migrations_before("sqlite", "0015").await;
    before.run(lite.pool()).await.unwrap();
    old_token_survives(&lite).await;

    let db = TestDb::new(Backend::Postgres).await;
    let pg = PgStore::connect(&db.url).await.unwrap();
    let before = migrations_before("postgres", "0015").await;
    before.run(pg.pool()).await.unwrap();
    old_token_survives(&pg).await;
}

/// The migrations numbered below `version`, from a copy of the directory.
async fn migrations_before(dialect: &str, version: &str) -> sqlx::migrate::Migrator {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(dialect);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < version {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(copy.path()).await.unwrap();
    let expected: usize = version.parse::<usize>().unwrap() - 1;
    assert_eq!(migrator.iter().count(), expected);
    migrator
}

async fn old_token_survives<DB>(store: &SqlStore<DB>)
where
    DB: Dialect + for<'a> Binds<&'a [u8]> + Binds<Uuid> + Binds<Ts>,
{
    let alice = super::user(store, "alice").await;
    let app = super::client(store).await;
    let t = super::now();
    let family = Uuid::now_v7();
    let digest = [0xA7; 32];
    let sql = "INSERT INTO refresh_families (id, user_id, client_id, audience, scope, created_at, expires_at)
               VALUES ($1, $2, $3, 'https://orders', 'orders:read', $4, $5)";
    sqlx::query(sql)
        .arg(family)
        .arg(alice.id)
        .arg(app.id)
        .arg(Ts(t))
        .arg(Ts(t + Duration::days(1)))
        .execute(DB::pool(store.pool()))
        .await
        .unwrap();
    let sql = "INSERT INTO refresh_tokens (digest, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
    sqlx::query(sql)
        .arg(&digest[..])
        .arg(family)
        .arg(Ts(t))
        .arg(Ts(t + Duration::hours(1)))
        .execute(DB::pool(store.pool()))
        .await
        .unwrap();

    store.migrate().await.unwrap();
    let mut selector = [0; 16];
    selector.copy_from_slice(&digest[..16]);
    let key = RefreshKey {
        selector: Uuid::from_bytes(selector),
        digest,
    };
    let found = store.refresh_token(&key).await.unwrap().unwrap();
    assert_eq!((found.family.id, found.used_at), (family, None));
    let wrong = RefreshKey {
        digest: [0xA8; 32],
        ..key
    };
    assert_eq!(store.refresh_token(&wrong).await.unwrap(), None);
}

/// An audit log written under the descending time indexes (before 0016) reads the same
/// after they are rebuilt ascending: newest first, by type and by client, on both
/// stores, and the rebuilt indexes are ascending.
#[tokio::test]
async fn audit_log_reads_the_same_after_its_indexes_turn_ascending() {
    let db = TestDb::new(Backend::Sqlite).await;
    let lite = SqliteStore::connect(&db.url).await.unwrap();
    let descending = "SELECT m.name FROM sqlite_master m JOIN pragma_index_xinfo(m.name) x
         WHERE m.type = 'index' AND m.tbl_name = 'audit_events' AND x.key AND x.desc";
    audit_log_survives(&lite, "sqlite", descending).await;

    let db = TestDb::new(Backend::Postgres).await;
    let pg = PgStore::connect(&db.url).await.unwrap();
    // indoption bit 0 marks a descending column.
    let descending = "SELECT x.indexrelid FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid,
                unnest(x.indoption::int2[]) AS o
         WHERE t.relname = 'audit_events' AND o & 1 = 1";
    audit_log_survives(&pg, "postgres", descending).await;
}

/// Migrates `store` to just before 0016, writes events, migrates the rest, writes more,
/// and reads them back; then no row of `descending` (the audit index columns still in
/// descending order) may remain.
async fn audit_log_survives<DB: Dialect>(
    store: &SqlStore<DB>,
    dialect: &str,
    descending: &'static str,
) where
    SqlStore<DB>: Store,
    DB::Connection: sqlx::migrate::Migrate,
{
    migrations_before(dialect, "0016")
        .await
        .run(store.pool())
        .await
        .unwrap();
    let events = super::audit::mixed_events(40, super::now());
    store.append_audit_events(&events[..25]).await.unwrap();
    store.migrate().await.unwrap();
    store.append_audit_events(&events[25..]).await.unwrap();

    let newest_first: Vec<_> = events.iter().rev().cloned().collect();
    let all = store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all, newest_first);
    let page = store
        .audit_events(&AuditQuery {
            limit: 10,
            before: Some((events[30].occurred_at, events[30].id)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page, newest_first[10..20]);
    let denied_by_a = store
        .audit_events(&AuditQuery {
            event_type: Some("token.denied".into()),
            client_id: Some("a".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let expected: Vec<_> = newest_first
        .iter()
        .filter(|e| e.event_type == "token.denied" && e.client_id.as_deref() == Some("a"))
        .cloned()
        .collect();
    assert_eq!((denied_by_a.len(), denied_by_a), (7, expected));

    let still = sqlx::query(descending)
        .fetch_optional(DB::pool(store.pool()))
        .await
        .unwrap();
    assert!(
        still.is_none(),
        "{dialect}: an audit index column is still descending"
    );
}
