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
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    tracing::info!(backend = ?store.backend(), "migrations applied");
    Ok(())
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
