//! End-to-end tests: each boots the real Mayfly service on an ephemeral port with a
//! fresh database and speaks HTTP to it. Every test runs on SQLite and on Postgres.
//! All of them compile into this one binary.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abuse;
mod access;
mod admin;
mod anomaly;
mod audit;
mod bound;
mod escalation;
mod exchange;
mod federated_sdk;
mod federation;
mod gateway;
mod helpers;
mod keys;
mod limits;
mod logins_end;
mod matrix;
mod revocation;
mod sdk;
mod streams;
mod token;
mod users;

/// Declares each listed test function once per backend. With `manual_rotation;` first,
/// the service runs without its key rotation schedule (the test ticks it by hand) and the
/// tests go in `sqlite_manual_rotation` / `postgres_manual_rotation`.
#[macro_export]
macro_rules! both_stores {
    (manual_rotation; $($name:ident),* $(,)?) => {
        mod sqlite_manual_rotation {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::helpers::spawn_app_manual_rotation(mayfly_store::Backend::Sqlite).await).await;
            })*
        }
        mod postgres_manual_rotation {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::helpers::spawn_app_manual_rotation(mayfly_store::Backend::Postgres).await).await;
            })*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::helpers::spawn_app(mayfly_store::Backend::Sqlite).await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::helpers::spawn_app(mayfly_store::Backend::Postgres).await).await;
            })*
        }
    };
}
