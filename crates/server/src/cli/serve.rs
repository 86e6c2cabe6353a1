//! `mayfly serve` and `mayfly migrate`: the service itself, built by the composition
//! root ([`crate::app::App::build`]).

use std::sync::Arc;

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::Config;

/// Runs `mayfly serve` until SIGINT or SIGTERM, then drains.
///
/// # Errors
/// Start-up or serving failed.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // A missing Postgres database is reported before anything is written (the master
    // key file is created on first start).
    if config.is_postgres() {
        config.master_key_source()?;
        drop(connect(&config.database_url).await?);
    }
    let app = App::build(config.into(), Arc::new(SystemClock)).await?;
    let state = &app.state;
    tracing::info!(
        listen = %app.local_addr().unwrap_or(state.config.listen),
        issuer = %state.issuer,
        backend = ?state.store.backend(),
        kid = %state.keyring.current().active.id(),
        "mayfly ready"
    );
    Ok(app.run(shutdown_signal()).await?)
}

/// Runs `mayfly migrate`.
///
/// # Errors
/// The database could not be opened or migrated.
pub async fn migrate(config: &Config, create: bool) -> anyhow::Result<()> {
    let store = super::open_store(config, create).await?;
    tracing::info!(backend = ?store.backend(), "migrations applied");
    Ok(())
}

/// Connects to the database, naming the `createdb` command when a Postgres database
/// does not exist.
///
/// # Errors
/// The database could not be opened.
pub async fn connect(url: &str) -> anyhow::Result<std::sync::Arc<dyn mayfly_store::Store>> {
    // Connections are made lazily: ping, so a missing database shows here.
    let opened = match mayfly_store::connect(url).await {
        Ok(store) => store.ping().await.map(|()| store),
        Err(e) => Err(e),
    };
    match opened {
        Ok(store) => Ok(store),
        Err(e) => {
            // The whole chain: the store's error wraps the driver's.
            let e = anyhow::Error::new(e);
            if let Some(createdb) = missing_database(url, &format!("{e:#}")) {
                anyhow::bail!("{createdb}");
            }
            Err(e.context("opening the database"))
        }
    }
}

/// For Postgres' "database does not exist" (SQLSTATE 3D000), one line naming the
/// command that creates it.
fn missing_database(url: &str, error: &str) -> Option<String> {
    if !error.contains("does not exist") || !error.contains("database") {
        return None;
    }
    let parsed = reqwest::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let name = parsed.path().trim_start_matches('/');
    let name = if name.is_empty() {
        parsed.username()
    } else {
        name
    };
    let mut command = String::from("createdb");
    if let Some(host) = parsed.host_str() {
        command.push_str(&format!(" -h {host}"));
    }
    if let Some(port) = parsed.port() {
        command.push_str(&format!(" -p {port}"));
    }
    if !parsed.username().is_empty() {
        command.push_str(&format!(" -U {}", parsed.username()));
    }
    command.push_str(&format!(" {name}"));
    Some(format!(
        "the Postgres database \"{name}\" does not exist: create it with `{command}`, then start again"
    ))
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining open requests");
}

#[cfg(test)]
mod tests {
    use super::missing_database;

    #[test]
    fn a_missing_postgres_database_names_createdb() {
        let line = missing_database(
            "postgres://mayfly:pw@db.internal:5433/tokens?sslmode=require",
            "error returned from database: database \"tokens\" does not exist",
        )
        .unwrap();
        assert_eq!(
            line,
            "the Postgres database \"tokens\" does not exist: create it with `createdb -h db.internal -p 5433 -U mayfly tokens`, then start again"
        );
        assert!(!line.contains("pw"), "no password");
        assert!(missing_database("postgres://h/db", "connection refused").is_none());
    }
}
