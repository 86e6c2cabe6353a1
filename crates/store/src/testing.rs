//! Throwaway databases for tests: a fresh SQLite file or a fresh Postgres database.
//!
//! Postgres is found through `MAYFLY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the test
//! fails: the Postgres suite never skips silently.

use std::sync::Arc;

use sqlx::Connection as _;
use uuid::Uuid;

use crate::{Backend, Store};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that lives as long as this value.
pub struct TestDb {
    /// The URL a `mayfly` process or store can open.
    pub url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// Creates an empty database of the given backend.
    ///
    /// # Panics
    /// When Postgres is unreachable: tests must not skip it silently.
    #[allow(clippy::expect_used, clippy::panic)]
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("mayfly.db").display());
                Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("MAYFLY_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
                let name = format!("mayfly_t_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("Postgres test server unreachable at {admin} ({e}); start it or set MAYFLY_TEST_POSTGRES_URL")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                Self {
                    url,
                    backend,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }

    /// Opens and migrates a store on this database.
    #[allow(clippy::expect_used)]
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = crate::connect(&self.url).await.expect("open test store");
        store.migrate().await.expect("migrate test store");
        store
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop is synchronous; use a private runtime on another thread so this works
        // inside and outside an async test.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
