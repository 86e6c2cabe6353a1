//! The composition root: the one place that builds a running Mayfly from its settings
//! and a clock. `mayfly serve` and the end-to-end tests both boot through
//! [`App::build`], so tests run the same background work as production.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::runtime::{AppState, StartError};

/// What [`App::build`] needs besides the clock: the configuration, and whether the
/// scheduled key rotation runs.
#[derive(Debug)]
pub struct Settings {
    /// The configuration (flags and environment in production).
    pub config: Config,
    /// The scheduled key rotation does not run: something else drives
    /// [`crate::keys::rotation::Rotator::tick`] (tests of the key lifecycle that step
    /// the clock and tick by hand, and must not race the schedule). False in production.
    pub manual_key_rotation: bool,
}

impl From<Config> for Settings {
    fn from(config: Config) -> Self {
        Self {
            config,
            manual_key_rotation: false,
        }
    }
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Configuration, master key, database or keyring.
    #[error("starting")]
    Start(#[from] StartError),
    /// The verifier of external tokens (its HTTP client) could not be built.
    #[error("building the external token verifier")]
    Verifier(#[source] reqwest::Error),
    /// A listen address could not be bound.
    #[error("binding {what}")]
    Bind {
        /// The address, and the flag that named it unless `--listen`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why serving ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The accept loop failed.
    #[error("serving")]
    Serve(#[source] std::io::Error),
    /// The audit writer did not finish cleanly (events may be lost).
    #[error("audit writer")]
    AuditWriter(#[source] tokio::task::JoinError),
}

/// A built service, not yet serving: its state, its background tasks (already running)
/// and its bound listener.
#[derive(Debug)]
pub struct App {
    /// The state every request shares.
    pub state: AppState,
    /// The background work, owned here so it is stopped in one place.
    pub tasks: Tasks,
    /// The bound API listener (`--listen`; port 0 picks one: see [`App::local_addr`]).
    pub listener: TcpListener,
}

impl App {
    /// Validates the configuration, opens the store, loads the keys, binds the
    /// listeners and starts every background task: the audit writer, key rotation (unless
    /// [`Settings::manual_key_rotation`]), audit retention, pruning of spent one-time ids
    /// and of refresh families, the sweep of expired access requests, and the apart
    /// metrics listener when `--metrics-listen` is set.
    ///
    /// # Errors
    /// [`BuildError`] naming what failed.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, BuildError> {
        let Settings {
            config,
            manual_key_rotation,
        } = settings;
        let listen = config.listen;
        let metrics_listen = config.metrics_listen;
        // One verifier of external tokens for the process, so every request shares its
        // cache of trusted issuers' keys (and its refetch limits).
        let verifier = mayfly_federation::Verifier::builder()
            .clock(Arc::new(crate::clock::FederationClock(clock.clone())))
            .build()
            .map_err(BuildError::Verifier)?;
        let started = AppState::start(config, clock, verifier).await?;
        let listener = bind(listen, listen.to_string()).await?;
        let metrics = match metrics_listen {
            Some(addr) => Some(bind(addr, format!("--metrics-listen {addr}")).await?),
            None => None,
        };
        let tasks = Tasks::start(
            &started.state,
            started.audit_writer,
            manual_key_rotation,
            metrics,
        );
        Ok(Self {
            state: started.state,
            tasks,
            listener,
        })
    }

    /// The address the API listener is bound to.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes and the open requests are drained, then stops
    /// the background tasks and waits for the audit writer to drain its queue (which it
    /// does once every holder of the state is gone).
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let served = crate::http::serve(self.listener, self.state, shutdown).await;
        let writer = self.tasks.stop().await;
        served.map_err(RunError::Serve)?;
        writer.await.map_err(RunError::AuditWriter)?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr, what: String) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind { what, source })
}

/// The owner of every background task of a running service: started together by
/// [`App::build`], stopped together by [`Tasks::stop`].
#[derive(Debug)]
pub struct Tasks {
    running: Vec<(&'static str, JoinHandle<()>)>,
    audit_writer: JoinHandle<()>,
}

impl Tasks {
    fn start(
        state: &AppState,
        audit_writer: JoinHandle<()>,
        manual_key_rotation: bool,
        metrics: Option<TcpListener>,
    ) -> Self {
        let config = &state.config;
        let mut running = vec![("metrics upkeep", crate::telemetry::spawn_metrics_upkeep())];
        if let Some(listener) = metrics {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listen = %addr, "metrics served apart");
            }
            running.push((
                "metrics listener",
                crate::http::ops::metrics::serve_apart(listener, state.clone()),
            ));
        }
        if !manual_key_rotation {
            running.push((
                "key rotation",
                crate::keys::rotation::spawn(
                    state.store.clone(),
                    state.keyring.clone(),
                    state.clock.clone(),
                    config.key_policy(),
                    config.key_reload_interval(),
                ),
            ));
        }
        running.push((
            "audit retention",
            crate::audit::spawn_retention(
                state.store.clone(),
                state.clock.clone(),
                config.audit_retention,
            ),
        ));
        running.push((
            "one-time id pruning",
            crate::oauth::dpop::spawn_pruning(state.store.clone(), state.clock.clone()),
        ));
        running.push((
            "refresh family pruning",
            crate::oauth::grant::refresh::spawn_pruning(state.store.clone(), state.clock.clone()),
        ));
        running.push((
            "access request expiry",
            crate::service::access::spawn_expiry(
                state.store.clone(),
                state.clock.clone(),
                state.webhook.clone(),
                config.access_pending_timeout,
            ),
        ));
        Self {
            running,
            audit_writer,
        }
    }

    /// The names of the running tasks (besides the audit writer), in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(name, _)| *name).collect()
    }

    /// Stops every task and waits until each has let go of what it held (the state and
    /// its audit sink); returns the audit writer, which finishes once the last sink is
    /// dropped and the queue is drained.
    pub async fn stop(self) -> JoinHandle<()> {
        for (_, task) in &self.running {
            task.abort();
        }
        for (_, task) in self.running {
            // Aborted: the only outcome is the cancellation.
            let _ = task.await;
        }
        self.audit_writer
    }
}
